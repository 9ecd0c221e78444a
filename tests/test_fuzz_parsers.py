"""Every parser of outside input, fed what Hypothesis makes up: it answers with a value or its
own error (UciError, ConfigError naming file and key, ProtocolError, TemplateError), never with
another exception. Round trips where a parser has an encoder. Extends the example-based tests
in test_uci.py, test_config.py, test_framed_protocol.py, test_console_unit.py and
test_label_templates.py (which hold the hand-picked cases)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import re
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory import uci
from factory.config import ConfigError, load, parse_listen
from factory.config.drivers import ConsoleSettings
from factory.labels.errors import TemplateError
from factory.labels.template import load_template
from factory.testbed.sim.pty import SimPty, Unplugged
from factory.units.console import ConsoleDriver
from factory.units.console_commands import check_digest
from factory.units.errors import ProtocolError, UnitError
from factory.units.framed import FramedDriver
from factory.units.framed_payloads import (
    Commit,
    Count,
    Digest,
    Get,
    Hello,
    Keygen,
    PathOnly,
    PayloadError,
    Put,
)
from factory.units.framed_protocol import MAGIC, Corrupt, Frame, FrameDecoder, Op
from factory.units.port import open_port
from tests.conftest import CONFIG_TEXT

ROOT = Path(__file__).resolve().parent.parent


def fuzzing(examples: int = 100) -> settings:
    """No deadline (the machine is shared and noisy); tests that write a file per example
    share pytest's tmp folder across examples on purpose."""
    examples = int(os.environ.get("FUZZ_PARSER_EXAMPLES", examples))
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- TOML: values of every type TOML has, and a writer for them ----------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    """A TOML basic string (tomllib reads it back as `text`)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """A value as inline TOML: any nesting of tables and arrays fits on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else toml_string(key)


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in data.items())


# Surrogates cannot be written to a UTF-8 file; everything else can.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
scalars = (texts | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.booleans()
           | st.datetimes(timezones=st.none() | st.just(dt.UTC)) | st.dates() | st.times())
toml_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(texts, inner, max_size=4), max_leaves=8)
# Strings that look nearly right find more than random text: digits of other scripts, a
# trailing newline, a port past 65535, a path with a NUL.
near_misses = st.sampled_from([
    "127.0.0.1:²", "127.0.0.1:٨٠", "127.0.0.1:99999", ":80", "[::1]:80", "a\n", "a\nb",
    "/dev/tty\x00", "socket://h:1\n", "http://x\n", "none\n", "06:00\n", "24:00", "x" * 70,
    "{uci", "{nope}", "{0}", "{uci!r}", "{uci:>{x}}", "10.0.0.0/8\n", "1e999", "", " ",
    "a{4294967296}", "(?P<x", "*",
])


def test_the_toml_writer_writes_what_tomllib_reads() -> None:
    @fuzzing()
    @given(st.dictionaries(texts, toml_values, max_size=5))
    def round_trip(data: dict[str, Any]) -> None:
        read = tomllib.loads(toml_document(data))
        assert toml_document(read) == toml_document(data)  # nan != nan: compare the text

    round_trip()


# --- UCIs ----------------------------------------------------------------------------------

values = st.integers(min_value=0, max_value=(1 << 80) - 1)


@fuzzing()
@given(st.text(max_size=45))
def test_any_text_is_a_uci_or_a_uci_error(text: str) -> None:
    try:
        canonical = uci.parse(text)
    except uci.UciError:
        return
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{16}", canonical)
    assert text.isascii(), "only ASCII spells a UCI: no look-alike from another script"
    assert uci.parse(uci.human(canonical)) == canonical


@fuzzing()
@given(st.text(st.sampled_from("0123456789ABCDEFGHJKMNPQRSTVWXYZ-iIlLoO \t"), max_size=24))
def test_text_made_of_uci_symbols_is_a_uci_or_says_why_not(text: str) -> None:
    try:
        uci.parse(text)
    except uci.UciError as exc:
        assert str(exc)


@fuzzing()
@given(values, st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["-", " ", "\t"])),
                        max_size=8), st.booleans())
def test_separators_anywhere_and_any_case_give_the_same_uci(
        value: int, cuts: list[tuple[int, str]], with_check: bool) -> None:
    canonical = uci.encode(value)
    text = uci.human(canonical) if with_check else canonical
    for at, separator in cuts:
        text = text[:at] + separator + text[at:]
    assert uci.parse(text.lower()) == canonical
    assert uci.parse(text) == canonical


@fuzzing()
@given(values, st.data())
def test_any_mix_of_look_alikes_gives_the_same_uci(value: int, data: st.DataObject) -> None:
    canonical = uci.encode(value)
    look_alikes = {"1": "IiLl", "0": "Oo"}
    text = "".join(data.draw(st.sampled_from(look_alikes[ch] + ch)) if ch in look_alikes
                   else ch for ch in uci.human(canonical))
    assert uci.parse(text) == canonical


@fuzzing()
@given(values)
def test_the_human_form_is_four_groups_and_a_check_symbol(value: int) -> None:
    human = uci.human(uci.encode(value))
    assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){4}[0-9A-HJKMNP-TV-Z*~$=U]", human)


def test_look_alikes_from_other_scripts_are_refused() -> None:
    # 'ı' (dotless i) and 'ſ' (long s) upper-case to I and S; the UCI on a label never
    # holds them, so a text that does was not copied from one.
    for text in ("ıKQ2M9XD3FHT0W5R", "7KQ2M9XD3FHT0W5ſ"):
        with pytest.raises(uci.UciError, match="not an ASCII"):
            uci.parse(text)


# --- station config ------------------------------------------------------------------------

BASE_CONFIG = tomllib.loads(CONFIG_TEXT + """
[printer]
queue = "none"

[upstream]
kind = "http"
url = "http://127.0.0.1:8700"
token_file = "upstream.token"

[status]
shifts = ["06:00", "14:00"]

[[fixtures]]
name = "bench-1"
port = "/dev/ttyUSB0"
driver = "console"
product = "01H4R15D3Q7K9M2X8Z5V6W4T0N"

[fixtures.console]
prompt = "# $"
""")
# Every table and array of tables a config has, and the keys each one knows.
CONFIG_KEYS: dict[str, list[str]] = {
    "": ["station", "ioto", "products", "printer", "upstream", "status", "fixtures"],
    "station": ["id", "listen", "journal", "labels", "max_body_bytes", "client_timeout"],
    "ioto": ["networks"],
    "products.0": ["id", "name", "model", "description", "label", "claim", "fields", "qr",
                   "account", "preclaim_wait", "claim_secret_days"],
    "products.1": ["id", "claim", "account", "preclaim_wait"],
    "printer": ["queue", "server", "copies", "options", "keep"],
    "upstream": ["kind", "url", "token_file", "concurrency", "timeout", "region", "policy"],
    "status": ["shifts", "open_networks", "backlog_alert_minutes"],
    "fixtures.0": ["name", "port", "driver", "product", "baud", "device_path",
                   "poll_interval", "console", "framed"],
    "fixtures.0.console": ["prompt", "timeout", "chunk_size", "login_user"],
}


def _table(data: dict[str, Any], path: str) -> Any:
    """The table at a dotted path ("fixtures.0.console"); None where a mutation left none."""
    table: Any = data
    for part in filter(None, path.split(".")):
        if isinstance(table, list) and part.isdigit() and int(part) < len(table):
            table = table[int(part)]
        elif isinstance(table, dict):
            table = table.setdefault(part, {})
        else:
            return None
    return table


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The base config with 1-3 keys set to anything TOML can hold (or a near miss)."""
    data = tomllib.loads(toml_document(BASE_CONFIG))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(sorted(CONFIG_KEYS)))
        key = draw(st.sampled_from(CONFIG_KEYS[path]) | texts)
        table = _table(data, path)
        if not isinstance(table, dict):
            continue
        table[key] = draw(toml_values | near_misses | st.integers(-2, 70000))
    return data


def _strings(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) that holds a string, however deep."""
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    found: list[tuple[Any, Any]] = []
    for key, item in items:
        found += [(value, key)] if isinstance(item, str) else _strings(item)
    return found


@st.composite
def nearly_good_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The base config with one good string value and a little more: a newline, a space, a
    NUL, a letter of another script (checks written with `^...$` let a newline through)."""
    data = tomllib.loads(toml_document(BASE_CONFIG))
    container, key = draw(st.sampled_from(_strings(data)))
    container[key] += draw(st.sampled_from(["\n", " ", "\x00", "\t", "ı", "²", "\n\n"]))
    return data


@fuzzing(300)
@given(mutated_configs() | nearly_good_configs())
def test_any_config_value_loads_or_names_the_file_and_key(tmp_path: Path,
                                                          data: dict[str, Any]) -> None:
    path = tmp_path / "station.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    try:
        config = load(path)
    except ConfigError as exc:
        assert exc.source == str(path) and exc.key, f"no file or key: {exc}"
        assert str(exc).startswith(f"{path}: {exc.key}: ")
        return
    # What loads is what was asked for, and what the rest of the station relies on.
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", config.station_id)
    assert 0 <= config.port <= 65535 and "\n" not in config.host
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", p.id)
               for p in config.products)
    assert all("\n" not in f.port and "\n" not in f.name for f in config.fixtures)
    assert "\n" not in config.upstream.url and "\n" not in config.printer.queue
    assert all("\n" not in p.label for p in config.products)


@fuzzing()
@given(texts | near_misses)
def test_a_listen_address_is_host_and_port_or_a_config_error(text: str) -> None:
    try:
        host, port = parse_listen("station.toml", text)
    except ConfigError as exc:
        assert exc.key == "listen"
        return
    assert host and 0 <= port <= 65535


# --- framed protocol -----------------------------------------------------------------------

frames = st.builds(Frame, seq=st.integers(0, 0xFFFF), op=st.integers(0, 0xFF),
                   status=st.integers(0, 0xFF), payload=st.binary(max_size=64))


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid frames, then bytes flipped, dropped, inserted (false magics among them)."""
    data = bytearray(b"".join(f.encode() for f in draw(st.lists(frames, min_size=1,
                                                                   max_size=4))))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "drop", "insert", "magic"]))
        if how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif how == "drop" and at < len(data):
            del data[at]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif how == "magic":
            data[at:at] = MAGIC
    return bytes(data)


def _decode(data: bytes, cuts: list[int]) -> tuple[list[Frame | Corrupt], FrameDecoder]:
    decoder = FrameDecoder()
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    events = [e for a, b in pairwise(points)
              for e in decoder.feed(data[a:b])]
    return events, decoder


@fuzzing()
@given(st.binary(max_size=400) | mutated_streams(), st.lists(st.integers(0, 1000), max_size=8))
def test_any_bytes_decode_to_sound_frames_or_corrupt_ones(data: bytes, cuts: list[int]) -> None:
    events, decoder = _decode(data, cuts)
    for event in events:
        assert isinstance(event, Frame | Corrupt)
        if isinstance(event, Frame):
            # A frame only comes out of bytes that were that frame, CRC and all.
            assert event.encode() in data
    # Bytes are accounted for: nothing is both skipped and kept, nothing is invented.
    assert decoder.skipped <= len(data)
    assert decoder.wanted >= 1
    decoder.skip_partial()


@fuzzing()
@given(st.lists(frames, min_size=1, max_size=4), st.lists(st.integers(0, 1000), max_size=8))
def test_frames_round_trip_through_any_chunking(sent: list[Frame], cuts: list[int]) -> None:
    events, decoder = _decode(b"".join(f.encode() for f in sent), cuts)
    assert events == sent and decoder.skipped == 0


PAYLOADS: list[Any] = [Hello, Put, Commit, Get, PathOnly, Keygen, Digest, Count]


@fuzzing()
@given(st.sampled_from(PAYLOADS), st.binary(max_size=300))
def test_any_payload_parses_exactly_or_is_a_payload_error(kind: Any, payload: bytes) -> None:
    try:
        value = kind.decode(payload)
    except PayloadError:
        return
    assert value.encode() == payload  # nothing dropped, nothing invented


@fuzzing()
@given(st.sampled_from([(Hello, Op.HELLO), (Count, Op.PUT), (Digest, Op.COMMIT),
                        (Digest, Op.HASH)]), st.binary(max_size=300))
def test_a_garbled_reply_payload_is_a_protocol_error(kind_op: tuple[Any, Op],
                                                     payload: bytes) -> None:
    kind, op = kind_op
    try:
        FramedDriver._parse(kind, Frame(1, op | 0x80, payload=payload), op)
    except ProtocolError as exc:
        assert op.name in exc.reason


# --- console output ------------------------------------------------------------------------

digest_words = st.sampled_from(["sha256", "md5", "cksum", "SHA256", "", "sha1"])


@fuzzing()
@given(st.binary(max_size=64), digest_words, st.text(max_size=80) | st.from_regex(
    r"[0-9a-fA-F]{0,70}|[0-9²٣]{0,12}", fullmatch=True), st.text(max_size=20))
def test_any_checksum_answer_verifies_or_is_a_unit_error(data: bytes, word: str, digest: str,
                                                         rest: str) -> None:
    output = f"{word}\n{digest}  -{rest}\n"
    try:
        verification = check_digest("config/device.json5", data, output)
    except UnitError as exc:
        assert exc.reason
        return
    assert verification.size == len(data)
    assert verification.algorithm in ("sha256", "md5", "cksum")


# --- label templates -----------------------------------------------------------------------

TEMPLATE = tomllib.loads((ROOT / "labels" / "thermal-50x30.toml").read_text())
TEMPLATE_KEYS: dict[str, list[str]] = {
    "": ["page", "text", "qr", "code128", "image", "sheet"],
    "page": ["unit", "width", "height", "margin", "dpi"],
    "text.0": ["name", "text", "x", "y", "width", "size", "min_size", "font", "align"],
    "qr.0": ["name", "content", "x", "y", "size", "level", "quiet_zone"],
}


@st.composite
def mutated_templates(draw: st.DrawFn) -> dict[str, Any]:
    data = tomllib.loads(toml_document(TEMPLATE))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(sorted(TEMPLATE_KEYS)))
        table = _table(data, path)
        if not isinstance(table, dict):
            continue
        key = draw(st.sampled_from(TEMPLATE_KEYS[path]) | texts)
        table[key] = draw(toml_values | near_misses | st.floats(-1e3, 1e3)
                          | st.sampled_from([0, -1, 1e308, 1e-308, 2**62]))
    return data


@fuzzing(150)
@given(mutated_templates())
def test_any_template_value_loads_or_names_the_element(tmp_path: Path,
                                                       data: dict[str, Any]) -> None:
    path = tmp_path / "label.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    try:
        template = load_template(path)
    except TemplateError as exc:
        assert exc.template == str(path) and exc.reason, f"no file or reason: {exc}"
        return
    page = template.page
    assert template.elements and all(math.isfinite(v) for v in (page.width, page.height))
    for element in template.elements:
        assert math.isfinite(element.x) and math.isfinite(element.y)


async def _answer_one_command(sim: SimPty, output: bytes, status: bytes) -> None:
    """A unit that runs nothing: it answers the station's one command line with `output`
    between the command's markers and then `status`, as a shell would print them."""
    line = b""
    while b"\n" not in line:
        line += await sim.read()
    found = re.search(rb"@FS''(\d+)@", line)
    assert found is not None
    tag = found[1]
    await sim.write(b"@FS" + tag + b"@\r\n" + output + b"@FS" + tag + b"@" + status + b"\r\n# ")


async def _identify(output: bytes, status: bytes) -> None:
    sim = SimPty()
    port = await open_port(sim.path, 115200)
    unit = asyncio.create_task(_answer_one_command(sim, output, status))
    try:
        await ConsoleDriver(port, ConsoleSettings(timeout=1.0)).identify()
    finally:
        await port.close()
        sim.hangup()
        unit.cancel()
        with contextlib.suppress(asyncio.CancelledError, Unplugged):
            await unit


@fuzzing(40)
@given(st.binary(max_size=300).filter(lambda b: b"@FS" not in b),
       st.from_regex(rb"[0-9]{1,3}", fullmatch=True) | st.from_regex(rb"[0-9]{4300,4400}",
                                                                     fullmatch=True))
def test_any_command_output_and_exit_status_is_an_answer_or_a_unit_error(
        output: bytes, status: bytes) -> None:
    # Real pty, real driver; only the unit's answer is made up.
    try:
        asyncio.run(_identify(output, status))
    except UnitError as exc:
        assert exc.reason
