"""Config loading: defaults, every key, and errors that name file, line and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from mediasrv.config import (
    Config,
    ConfigError,
    DigestAlgorithm,
    LogFormat,
    RecordingFormat,
    RecordMode,
    load_config,
    parse_hostport,
    parse_sip_uri_host,
    to_e164,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.toml"
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def error_of(tmp_path: Path, text: str) -> ConfigError:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    return exc.value


def test_defaults_without_a_file() -> None:
    cfg = load_config(None)
    assert cfg.source == "<defaults>"
    assert cfg.server.sip_hostport == ("0.0.0.0", 5060)
    assert cfg.server.http_hostport == ("127.0.0.1", 8080)
    assert cfg.server.db_path == Path("var/mediasrv.db")
    assert cfg.server.recordings_dir == Path("var/recordings")
    assert cfg.server.advertised_host == "127.0.0.1"
    assert cfg.server.log_format is LogFormat.JSON
    assert cfg.media.record is RecordMode.BOTH
    assert cfg.media.recording_format is RecordingFormat.PCM16
    assert (cfg.sip.t1, cfg.sip.t2, cfg.sip.t4) == (0.5, 4.0, 5.0)
    assert cfg.trunks == () and cfg.numbers == ()
    assert cfg.number_for("0312345678") is None
    assert cfg.trunk_for_source("127.0.0.1") is None


def test_example_config_loads_and_sets_every_key() -> None:
    cfg = load_config(REPO / "conf" / "mediasrv.example.toml")
    assert cfg.trunks and cfg.numbers
    assert cfg.numbers[0].destinations[0].startswith("sip:")


def test_full_file_is_typed(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        [server]
        sip_listen = "[::1]:5070"
        http_listen = "127.0.0.1:0"
        data_dir = "/tmp/msrv"
        public_address = "192.0.2.10"
        drain_timeout = 5
        log_format = "TEXT"
        log_level = "debug"

        [sip]
        ring_timeout = 12.5
        max_forwards = 20

        [media]
        rtp_port_min = 30000
        rtp_port_max = 30099
        record = "caller"
        recording_format = "ulaw"

        [[trunks]]
        name = "carrier-a"
        addresses = ["10.0.0.0/8", "::1/128"]
        inbound_auth = true
        username = "u"
        password = "p"
        algorithm = "md5"

        [[trunks]]
        name = "carrier-b"
        addresses = ["192.0.2.0/24"]

        [[numbers]]
        number = "03-1234-5678"
        business = "acme"
        medium = "web"
        destinations = ["sip:op1@127.0.0.1:5090", "sip:op2@[::1]:5092;transport=tcp"]
        trunk = "carrier-b"

        [[numbers]]
        number = "+815011112222"
        destinations = ["sip:op3@example.com"]
        ring_timeout = 7
        record = "off"
        """,
    )
    cfg = load_config(p)
    assert cfg.source == str(p)
    assert cfg.server.sip_hostport == ("::1", 5070)
    assert cfg.server.advertised_host == "192.0.2.10"
    assert cfg.server.drain_timeout == 5.0 and isinstance(cfg.server.drain_timeout, float)
    assert cfg.server.log_format is LogFormat.TEXT
    assert cfg.server.data_dir == Path("/tmp/msrv")
    assert cfg.media.record is RecordMode.CALLER
    assert cfg.trunks[0].algorithm is DigestAlgorithm.MD5
    # per-number values fall back to [sip]/[media] defaults
    first, second = cfg.numbers
    assert first.number == "0312345678"
    assert first.ring_timeout == 12.5 and first.record is RecordMode.CALLER
    assert second.ring_timeout == 7.0 and second.record is RecordMode.OFF
    assert cfg.trunk_named("carrier-b") is cfg.trunks[1]


def test_number_matching_national_and_e164(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        [[numbers]]
        number = "0312345678"
        destinations = ["sip:a@127.0.0.1"]
        [[numbers]]
        number = "+815011112222"
        destinations = ["sip:b@127.0.0.1"]
        """,
    )
    cfg = load_config(p)
    a, b = cfg.numbers
    for dialled in ("0312345678", "+81312345678", "81312345678", "03-1234-5678;npdi"):
        assert cfg.number_for(dialled) is a, dialled
    for dialled in ("05011112222", "+815011112222"):
        assert cfg.number_for(dialled) is b, dialled
    assert cfg.number_for("0312345679") is None
    assert cfg.number_for("anonymous") is None


def test_trunk_acl(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        [[trunks]]
        name = "v4"
        addresses = ["127.0.0.0/8"]
        [[trunks]]
        name = "v6"
        addresses = ["::1/128"]
        """,
    )
    cfg = load_config(p)
    assert cfg.trunk_for_source("127.0.0.5") is cfg.trunks[0]
    assert cfg.trunk_for_source("::ffff:127.0.0.1") is cfg.trunks[0]
    assert cfg.trunk_for_source("::1") is cfg.trunks[1]
    assert cfg.trunk_for_source("[::1]") is cfg.trunks[1]
    assert cfg.trunk_for_source("10.1.1.1") is None
    assert cfg.trunk_for_source("not-an-ip") is None


def test_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, '[server]\nsip_listen = "0.0.0.0:5060"\n')
    cfg = load_config(
        p,
        {
            "server.sip_listen": "127.0.0.1:5070",
            "server.data_dir": tmp_path / "d",
            "server.drain_timeout": "2.5",
            "media.no_rtp_timeout": 9,
        },
    )
    assert cfg.server.sip_hostport == ("127.0.0.1", 5070)
    assert cfg.server.data_dir == tmp_path / "d"
    assert cfg.server.drain_timeout == 2.5
    assert cfg.media.no_rtp_timeout == 9.0
    assert load_config(None, {"server.http_listen": "127.0.0.1:0"}).server.http_hostport[1] == 0


def test_bad_override_names_the_command_line() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"server.sip_listen": "nope"})
    assert str(exc.value).startswith("<command line>: server.sip_listen: ")
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"server.sip_lisen": "127.0.0.1:1"})
    assert "did you mean 'sip_listen'" in str(exc.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config("/nonexistent/x.toml")
    assert str(exc.value).startswith("/nonexistent/x.toml: cannot read config file")


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    e = error_of(tmp_path, '[server]\nsip_listen = "a"\nhttp_listen = \n')
    assert e.line == 3 and e.key == "server.http_listen"
    assert str(e).startswith(f"{tmp_path / 'x.toml'}:3: server.http_listen: TOML syntax error")
    e = error_of(tmp_path, '[server]\nsip_listen = "a"\n[[numbers]]\nnumber = 03\n')
    assert (e.line, e.key) == (4, "numbers[0].number")
    e = error_of(tmp_path, "[server\n")
    assert e.line == 1 and e.key == "server" and "TOML syntax error" in e.message


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_bytes(b'[server]\nuser = "\xff"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert exc.value.line == 2 and "UTF-8" in exc.value.message


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        # unknown keys, with a suggestion
        ('[server]\nsip_lsten = "1.2.3.4:5"\n', 2, "server.sip_lsten", "did you mean 'sip_listen'"),
        ("[serve]\n", 1, "serve", "did you mean 'server'"),
        # wrong types
        ("[server]\nsip_listen = 5060\n", 2, "server.sip_listen", "expected a string"),
        ('[sip]\nmax_forwards = "70"\n', 2, "sip.max_forwards", "expected an integer"),
        ("[sip]\nmax_forwards = true\n", 2, "sip.max_forwards", "expected an integer"),
        ('[media]\nno_rtp_timeout = "60"\n', 2, "media.no_rtp_timeout", "expected a number"),
        ("server = 3\n", 1, "server", "expected a table"),
        ('[trunks]\nname = "a"\n', 1, "trunks", "array of tables"),
        # bad values
        ('[server]\nhttp_listen = "127.0.0.1:99999"\n', 2, "server.http_listen", "0 to 65535"),
        ('[server]\nsip_listen = "::1:5060"\n', 2, "server.sip_listen", "needs brackets"),
        ('[server]\nlog_format = "jsn"\n', 2, "server.log_format", "did you mean 'json'"),
        ("[server]\ndrain_timeout = -1\n", 2, "server.drain_timeout", "greater than 0"),
        ("[media]\nrtp_port_min = 20001\n", 2, "media.rtp_port_min", "must be even"),
        (
            "[media]\nrtp_port_min = 30000\nrtp_port_max = 20000\n",
            2,
            "media.rtp_port_min",
            "below rtp_port_max",
        ),
        (
            '[server]\nsip_listen = "0.0.0.0:8080"\nhttp_listen = "127.0.0.1:8080"\n',
            3,
            "server.http_listen",
            "also sip_listen's port",
        ),
        ('[media]\nrecord = "stereo"\n', 2, "media.record", "both, caller, operator, off"),
        ("[sip]\nt1 = 5.0\nt2 = 4.0\n", 3, "sip.t2", "at least t1"),
    ],
)
def test_bad_values_are_located(
    tmp_path: Path, text: str, line: int, key: str, fragment: str
) -> None:
    e = error_of(tmp_path, text)
    assert (e.line, e.key) == (line, key), str(e)
    assert fragment in e.message
    assert str(e) == f"{tmp_path / 'x.toml'}:{line}: {key}: {e.message}"


def test_errors_in_arrays_of_tables_point_at_the_right_element(tmp_path: Path) -> None:
    e = error_of(
        tmp_path,
        """
        [[numbers]]
        number = "0312345678"
        destinations = ["sip:a@127.0.0.1"]

        [[numbers]]
        number = "0312345679"
        notes = '''
        [[numbers]]
        destinations = 5
        '''
        destinations = [
          "sip:b@127.0.0.1",
          "op2 at home",
        ]
        """,
    )
    # the multi-line string's fake header is not counted as a third element
    assert e.key == "numbers[1].notes" and e.line == 7
    e = error_of(
        tmp_path,
        """
        [[numbers]]
        number = "0312345678"
        destinations = ["sip:a@127.0.0.1"]

        [[numbers]]
        number = "0312345679"
        destinations = [
          "sip:b@127.0.0.1",
          "op2 at home",
        ]
        """,
    )
    assert e.key == "numbers[1].destinations[1]" and e.line == 7
    assert "not a SIP URI" in e.message


def test_destinations_must_be_a_list_of_uris(tmp_path: Path) -> None:
    e = error_of(tmp_path, '[[numbers]]\nnumber = "0312345678"\ndestinations = "sip:a@h"\n')
    assert (
        str(e) == f"{tmp_path / 'x.toml'}:3: numbers[0].destinations: expected a list of SIP URIs"
    )


def test_bad_cidr_and_duplicates(tmp_path: Path) -> None:
    e = error_of(tmp_path, '[[trunks]]\nname = "a"\naddresses = ["10.0.0.0/33"]\n')
    assert (e.key, e.line) == ("trunks[0].addresses[0]", 3) and "CIDR" in e.message
    e = error_of(tmp_path, '[[trunks]]\nname = "a"\n[[trunks]]\nname = "a"\n')
    assert (e.key, e.line) == ("trunks[1].name", 4) and "duplicate trunk" in e.message
    e = error_of(
        tmp_path,
        """
        [[numbers]]
        number = "0312345678"
        destinations = ["sip:a@127.0.0.1"]
        [[numbers]]
        number = "+81312345678"
        destinations = ["sip:b@127.0.0.1"]
        """,
    )
    assert (e.key, e.line) == ("numbers[1].number", 5)
    assert "duplicate number" in e.message and "numbers[0] at line 2" in e.message


def test_missing_required_keys_and_unknown_trunk(tmp_path: Path) -> None:
    e = error_of(tmp_path, '[[numbers]]\ndestinations = ["sip:a@h"]\n')
    assert (e.key, e.line) == ("numbers[0]", 1) and "missing key 'number'" in e.message
    e = error_of(tmp_path, '[[numbers]]\nnumber = "0312345678"\n')
    assert "missing key 'destinations'" in e.message
    e = error_of(
        tmp_path, '[[numbers]]\nnumber = "0312345678"\ndestinations = ["sip:a@h"]\ntrunk = "x"\n'
    )
    assert (e.key, e.line) == ("numbers[0].trunk", 4) and "unknown trunk" in e.message
    e = error_of(tmp_path, '[[trunks]]\nname = "a"\ninbound_auth = true\n')
    assert e.key == "trunks[0].inbound_auth" and "username" in e.message


def test_dotted_keys_and_inline_tables_are_located(tmp_path: Path) -> None:
    e = error_of(tmp_path, '# hi\nserver.sip_listen = "x"\n')
    assert (e.key, e.line) == ("server.sip_listen", 2)
    e = error_of(tmp_path, "# a\n# b\nsip = { max_forwards = 0 }\n")
    assert (e.key, e.line) == ("sip.max_forwards", 3)


def test_helpers() -> None:
    assert parse_hostport("[::]:0") == ("::", 0)
    assert parse_hostport("localhost:8080") == ("localhost", 8080)
    for bad in ("5060", ":5060", "host:", "[::1]5060", "bad host:1", "[nope]:1"):
        with pytest.raises(ValueError):
            parse_hostport(bad)
    assert parse_sip_uri_host("sip:op@[::1]:5090;transport=TCP") == ("::1", 5090)
    assert parse_sip_uri_host("sips:example.com") == ("example.com", None)
    for bad in ("http://x", "sip:", "sip:a@b:70000", "sip:a b@c"):
        with pytest.raises(ValueError):
            parse_sip_uri_host(bad)
    assert to_e164("090-1234-5678") == "+819012345678"
    assert to_e164("+81312345678") == "+81312345678"
    assert to_e164("anonymous") is None
    assert to_e164("110") is None  # an emergency short code has no E.164 form


def test_config_is_constructible_directly() -> None:
    from mediasrv.config import NumberConfig, TrunkConfig

    cfg = Config(
        trunks=(TrunkConfig(name="t", addresses=("127.0.0.1/32",)),),
        numbers=(NumberConfig(number="0312345678", destinations=("sip:a@127.0.0.1",)),),
    )
    assert cfg.trunk_for_source("127.0.0.1") is cfg.trunks[0]
    assert cfg.number_for("+81312345678") is cfg.numbers[0]


def test_every_key_of_the_example_is_located_on_its_own_line() -> None:
    """Break each key of the example file in turn: the error must point at that key's line."""
    path = REPO / "conf" / "mediasrv.example.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    checked = 0
    for i, line in enumerate(lines):
        m = re.match(r"^([a-z_0-9]+) = ", line)
        if not m:
            continue
        broken = [*lines]
        broken[i] = f"{m.group(1)} = {{ nested = 1 }}"  # a table where a scalar/list belongs
        with pytest.raises(ConfigError) as exc:
            load_config_text("\n".join(broken))
        assert exc.value.line == i + 1, (line, str(exc.value))
        assert exc.value.key.endswith(m.group(1))
        checked += 1
    assert checked >= 25


def load_config_text(text: str) -> Config:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.toml"
        p.write_text(text, encoding="utf-8")
        return load_config(p)
