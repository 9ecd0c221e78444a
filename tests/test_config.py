"""Station config: the shipped examples load; bad files name the file, the key and the reason."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import get_args

import pytest

from factory.config import DRIVERS, UPSTREAM_KINDS, ConfigError, Fixture, load
from factory.config.fixtures import SETTINGS
from factory.config.station import PrinterKind
from factory.config.upstream import PARSERS
from factory.labels.printers.kinds import PRINTERS
from tests.conftest import CONFIG_TEXT, OTHER_PRODUCT, PRODUCT, ROOT, run_cli, write_config


@pytest.mark.parametrize("name", ["example.toml", "line.example.toml"])
def test_shipped_examples_load(name: str) -> None:
    config = load(ROOT / "station_config" / name)
    assert config.products
    assert config.product(config.products[0].id) is config.products[0]


def test_values_are_parsed(tmp_path: Path) -> None:
    config = load(write_config(tmp_path))
    assert config.station_id == "test-station"
    assert (config.host, config.port) == ("127.0.0.1", 0)
    assert config.journal == tmp_path / "journal.sqlite"  # relative to the file's folder
    assert config.max_body_bytes == 4096
    assert [str(n) for n in config.ioto_networks] == ["127.0.0.0/8", "::1/128"]
    product = config.product(PRODUCT)
    assert product is not None and product.model == "AQ-100" and product.claim == "user"
    assert config.product("nope") is None


def _replace(old: str, new: str) -> str:
    assert old in CONFIG_TEXT
    return CONFIG_TEXT.replace(old, new, 1)


UPSTREAM = '\n[upstream]\nkind = "http"\nurl = "http://127.0.0.1:9/"\ntoken_file = "t"\n'
BAD = [
    ("[station", "", "is not valid TOML"),
    (_replace('id = "test-station"\n', ""), "station.id", "is required"),
    (_replace('id = "test-station"', 'id = "bad station!"'), "station.id", "letters, digits"),
    (_replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1"'), "station.listen",
     "HOST:PORT"),
    (_replace('listen = "127.0.0.1:0"', 'listen = 8080'), "station.listen",
     "must be a string, got an integer"),
    (_replace("max_body_bytes = 4096", "max_body_bytes = true"), "station.max_body_bytes",
     "must be an integer, got true or false"),
    (_replace("max_body_bytes = 4096", "max_body_bytes = 10"), "station.max_body_bytes",
     "between 1024"),
    (_replace("max_body_bytes = 4096", "max_body_byte = 4096"), "station.max_body_byte",
     "not a known setting"),
    (_replace('"127.0.0.0/8"', '"127.0.0.1/8"'), "ioto.networks[0]", "not a CIDR network"),
    (_replace('"127.0.0.0/8"', "12"), "ioto.networks[0]", "CIDR string"),
    (_replace('name = "Acme Hub"\n', ""), "products[1].name", "is required"),
    (_replace('claim = "pre"', 'claim = "later"'), "products[1].claim",
     "must be one of user, pre"),
    (_replace('account = "acme-retail"\n', ""), "products[1].account",
     "names the account its units are claimed for"),
    (_replace('claim = "pre"', 'claim = "pre"\npreclaim_wait = 0'), "products[1].preclaim_wait",
     "seconds above 0"),
    (_replace('model = "AQ-100"', 'model = "AQ-100"\nclaim_secret_days = -1'),
     "products[0].claim_secret_days", "0 (no claim secret) to 3650"),
    (_replace('model = "AQ-100"', 'model = "AQ-100"\naccount = "x"'), "products[0].account",
     "not a known setting"),
    (CONFIG_TEXT + '\n[[fixtures]]\nname = "f"\nport = "/dev/ttyX"\ndriver = "framed"\n'
     'product = "01H4R15D3Q7K9M2X8Z5V6W4T0P"\n', "fixtures[0].product",
     "needs an [upstream]"),
    (_replace('id = "01H4R15D3Q7K9M2X8Z5V6W4T0P"', f'id = "{PRODUCT}"'), "products[1].id",
     "defined twice"),
    (CONFIG_TEXT + "\n[products.fields]\nid = \"X\"\n", "products[1].fields.id",
     "set by the station"),
    (CONFIG_TEXT + "\n[products.fields]\nlist = [1]\n", "products[1].fields.list",
     "string, number or true/false"),
    # Issue 17: what the Ioto agent cannot read in device.json5 is refused at load.
    (CONFIG_TEXT + "\n[products.fields]\nscale = inf\n", "products[1].fields.scale",
     "must be a finite number, got inf"),
    (CONFIG_TEXT + "\n[products.fields]\nscale = nan\n", "products[1].fields.scale",
     "must be a finite number, got nan"),
    (CONFIG_TEXT + '\n[products.fields]\nserial = "A\\u0000B"\n', "products[1].fields.serial",
     "control character '\\x00' (U+0000)"),
    (CONFIG_TEXT + '\n[products.fields]\nnote = "two\\nlines"\n', "products[1].fields.note",
     "control character '\\n' (U+000A)"),
    (_replace('model = "AQ-100"', 'model = "AQ-100\\u0085"'), "products[0].model",
     "U+0085"),
    (_replace('claim = "pre"', 'claim = "pre"\ndescription = "bell\\u0007"'),
     "products[1].description", "U+0007"),
    (CONFIG_TEXT + "\n[printer]\ncopies = 0\n", "printer.copies", "must be 1 to 10"),
    (CONFIG_TEXT + "\n[printer]\nqueue = \"a b\"\n", "printer.queue", "CUPS queue name"),
    (CONFIG_TEXT + "\n[printer]\nqueue = \"q\"\n[printer.options]\nmedia = 5\n",
     "printer.options.media", "name = \"value\""),
    (CONFIG_TEXT + "\n[printer]\nlanguage = \"epl\"\n", "printer.language",
     "must be one of pdf, zpl"),
    (CONFIG_TEXT + "\n[printer]\ndpi = 200\n", "printer.dpi", "152, 203, 300, 600"),
    (CONFIG_TEXT + "\n[printer]\nlanguage = \"zpl\"\nsocket = \"zebra-1\"\n",
     "printer.socket", "must be HOST:PORT"),
    (CONFIG_TEXT + "\n[printer]\nlanguage = \"zpl\"\nsocket = \"a b:9100\"\n",
     "printer.socket", "printer's HOST:PORT"),
    (CONFIG_TEXT + "\n[printer]\nlanguage = \"zpl\"\nsocket = \"zebra-1:0\"\n",
     "printer.socket", "printer's HOST:PORT"),
    (CONFIG_TEXT + "\n[printer]\nsocket = \"zebra-1:9100\"\n", "printer.socket",
     "set language = \"zpl\""),
    (CONFIG_TEXT + "\n[printer]\nlanguage = \"zpl\"\nqueue = \"q\"\n"
     "socket = \"zebra-1:9100\"\n", "printer.socket", "remove one"),
    (CONFIG_TEXT + "\n[scanner]\nx = 1\n", "scanner", "not a known setting"),
    (CONFIG_TEXT + UPSTREAM + "retry_base = 0\n", "upstream.retry_base", "seconds above 0"),
    (CONFIG_TEXT + UPSTREAM + "retry_base = 5\nretry_cap = 2\n", "upstream.retry_cap",
     "at least retry_base (5 s)"),
    (_replace('claim = "pre"', 'claim = "pre"\nqr = "https://c.example/{serial}"'),
     "products[1].qr", "unknown placeholder {serial}"),
    (_replace('claim = "pre"', 'claim = "pre"\nqr = "https://c.example/{uci"'),
     "products[1].qr", "is not a format string"),
    (_replace('claim = "pre"', 'claim = "pre"\nlabel = "../etc/passwd"'),
     "products[1].label", "template name"),
    (_replace('model = "AQ-100"', 'model = "AQ-100"\nfields = { hardware_revision = 3 }\n'
                                  '[products.nvs]\nsize = 0x3000'),
     "products[0].fields.hardware_revision", "is 17 bytes, and an NVS key is at most 15"),
    (_replace('model = "AQ-100"', 'model = "AQ-100"\n[products.nvs]\n'
                                  'namespace = "factory_settings"'),
     "products[0].nvs.namespace", "must be 1-15 printable bytes"),
    (_replace('model = "AQ-100"', 'model = "AQ-100"\n[products.nvs]\nentries = '
                                  '[{ key = "manufacturing_date", type = "string", '
                                  'value = "{uci}" }]'),
     "products[0].nvs.entries[0].key", "must be 1-15 printable bytes"),
    (_replace('account = "acme-retail"', 'account = "acme-retail"\n[products.nvs]\n'
                                         'cert_namespace = "device_certificates"'),
     "products[1].nvs.cert_namespace", "must be 1-15 printable bytes"),
    (_replace('account = "acme-retail"', 'account = "acme-retail"\n[products.nvs]\n'
                                         'namespace = "hub"\ncert_namespace = "hub"'),
     "products[1].nvs.cert_namespace", "must differ from namespace ('hub')"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD)
def test_bad_config_names_file_key_and_reason(tmp_path: Path, text: str, key: str,
                                              reason: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.source == str(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(path) in str(info.value)


FIXTURE = f"""
[[fixtures]]
name = "f1"
port = "/dev/ttyUSB0"
driver = "console"
product = "{PRODUCT}"
"""


def test_fixtures_are_parsed_with_their_driver_settings(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, CONFIG_TEXT + FIXTURE + """
[fixtures.console]
prompt = '\\$ $'
timeout = 2
login_user = "root"

[[fixtures]]
name = "f2"
port = "socket://127.0.0.1:7000"
driver = "framed"
product = "01H4R15D3Q7K9M2X8Z5V6W4T0P"
baud = 9600
[fixtures.framed]
retries = 5

[upstream]
kind = "http"
url = "http://127.0.0.1:9/"
token_file = "registry.token"
"""))
    first, second = config.fixtures
    relative = load(write_config(tmp_path, CONFIG_TEXT + FIXTURE.replace(
        '"/dev/ttyUSB0"', '"../sim/unit0.tty"'))).fixtures[0]
    assert relative.port == str(tmp_path.parent / "sim" / "unit0.tty")
    assert (first.name, first.baud, first.device_path) == ("f1", 115200, "config/device.json5")
    assert first.console.prompt == "\\$ $" and first.console.timeout == 2.0
    assert first.console.login_user == "root" and first.console.chunk_size == 768
    assert (second.driver, second.baud, second.framed.retries) == ("framed", 9600, 5)


def test_esptool_reset_modes_are_esptools_own(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, CONFIG_TEXT + FIXTURE.replace(
        'driver = "console"', 'driver = "esptool"') + """
[fixtures.esptool]
before = "no-reset-no-sync"
after = "soft-reset"
flash_baud = 921600
port_goes_with_unit = false
"""))
    (fixture,) = config.fixtures
    assert (fixture.esptool.before, fixture.esptool.after) == ("no-reset-no-sync", "soft-reset")
    assert fixture.esptool.flash_baud == 921600 and not fixture.esptool.port_goes_with_unit
    defaults = load(write_config(tmp_path, CONFIG_TEXT + FIXTURE)).fixtures[0].esptool
    assert (defaults.before, defaults.after) == ("default-reset", "hard-reset")


def test_a_field_too_long_for_nvs_fails_only_where_esptool_flashes_it(tmp_path: Path) -> None:
    text = _replace('model = "AQ-100"', 'model = "AQ-100"\nfields = { hardware_revision = 3 }')
    assert load(write_config(tmp_path, text + FIXTURE)).fixtures  # device.json5 takes it
    with pytest.raises(ConfigError) as info:
        load(write_config(tmp_path, text + FIXTURE.replace('"console"', '"esptool"')))
    assert info.value.key == "products[0].fields.hardware_revision"
    assert "at most 15" in info.value.reason and "fixture 'f1'" in info.value.reason


def test_a_preclaimed_product_on_an_esptool_fixture_loads_with_its_cert_namespace(
        tmp_path: Path) -> None:
    fixture = FIXTURE.replace('"console"', '"esptool"').replace(PRODUCT, OTHER_PRODUCT)
    config = load(write_config(tmp_path, CONFIG_TEXT + UPSTREAM + fixture))
    hub = config.product(OTHER_PRODUCT)
    assert hub is not None and hub.claim == "pre" and config.fixtures[0].driver == "esptool"
    assert (hub.nvs.namespace, hub.nvs.cert_namespace) == ("fctry", "fctry_cert")
    text = _replace('account = "acme-retail"', 'account = "acme-retail"\n[products.nvs]\n'
                                               'cert_namespace = "hub_cert"')
    hub = load(write_config(tmp_path, text + UPSTREAM + fixture)).product(OTHER_PRODUCT)
    assert hub is not None and hub.nvs.cert_namespace == "hub_cert"


def _fixture(old: str, new: str) -> str:
    assert old in FIXTURE
    return CONFIG_TEXT + FIXTURE.replace(old, new, 1)


BAD_FIXTURES = [
    (_replace('model = "AQ-100"', 'model = "AQ-100"\nserialized_by = "agent"')
     + FIXTURE.replace('"console"', '"esptool"'), "fixtures[0].driver",
     "an esptool unit cannot hold"),
    (_fixture('driver = "console"', 'driver = "modbus"'), "fixtures[0].driver",
     "must be one of console, framed"),
    (_fixture('port = "/dev/ttyUSB0"', 'port = ""'), "fixtures[0].port",
     "must name the fixture's serial port"),
    (_fixture('port = "/dev/ttyUSB0"', 'port = "rfc2217://h:1"'), "fixtures[0].port",
     "socket://HOST:PORT"),
    (_fixture(f'product = "{PRODUCT}"', 'product = "X"'), "fixtures[0].product",
     "not one of the [[products]] ids"),
    (_fixture('name = "f1"', 'name = "f1"\nbaud = 0'), "fixtures[0].baud", "between 50"),
    (_fixture('name = "f1"', 'name = "f1"\npoll_interval = -1'), "fixtures[0].poll_interval",
     "above 0"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.console]\nprompt = '(['\n",
     "fixtures[0].console.prompt", "not a regular expression"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.console]\ntimeout = 'soon'\n",
     "fixtures[0].console.timeout", "must be a number, got a string"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.console]\npromt = '#'\n",
     "fixtures[0].console.promt", "not a known setting"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.esptool]\nbefore = 'no-sync'\n",
     "fixtures[0].esptool.before", "must be one of default-reset, usb-reset, no-reset, "
                                   "no-reset-no-sync, got 'no-sync'"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.esptool]\nafter = 'reboot'\n",
     "fixtures[0].esptool.after", "must be one of hard-reset, watchdog-reset, soft-reset, "
                                  "no-reset"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.esptool]\nport_goes_with_unit = 1\n",
     "fixtures[0].esptool.port_goes_with_unit", "must be true or false"),
    (CONFIG_TEXT + FIXTURE + "[fixtures.esptool]\nflash_baud = 9000000\n",
     "fixtures[0].esptool.flash_baud", "between 9600 and 4000000"),
    (CONFIG_TEXT + FIXTURE + FIXTURE.replace('"/dev/ttyUSB0"', '"/dev/ttyUSB1"'),
     "fixtures[1].name", "'f1' is used twice"),
    (CONFIG_TEXT + FIXTURE + FIXTURE.replace('"f1"', '"f2"'),
     "fixtures[1].port", "'/dev/ttyUSB0' is used twice"),
    (CONFIG_TEXT + FIXTURE + 'scan_check = true\n[fixtures.scanner]\nport = "/dev/ttyUSB0"\n',
     "fixtures[0].scanner.port", "'/dev/ttyUSB0' is this fixture's own unit port"),
    (CONFIG_TEXT + FIXTURE + FIXTURE.replace('"f1"', '"f2"').replace("USB0", "USB1")
     + 'scan_check = true\n[fixtures.scanner]\nport = "/dev/./ttyUSB0"\n',
     "fixtures[1].scanner.port", "fixture 'f1''s unit port"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD_FIXTURES)
def test_bad_fixture_names_key_and_reason(tmp_path: Path, text: str, key: str,
                                          reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write_config(tmp_path, text))
    assert info.value.key == key
    assert reason in info.value.reason


def test_printer_and_labels(tmp_path: Path) -> None:
    plain = load(write_config(tmp_path))
    assert not plain.printer.enabled
    assert plain.printer.keep == tmp_path / "labels"  # beside the journal
    assert plain.labels_dir == tmp_path.parent / "labels"
    config = load(write_config(tmp_path, CONFIG_TEXT.replace(
        'claim = "pre"', 'claim = "pre"\nqr = "https://c.example/c/{uci}"') + """
[printer]
queue = "zebra-1"
server = "127.0.0.1:6310"
copies = 2
keep = "pdfs"
[printer.options]
media = "Custom.50x30mm"
"""))
    assert config.printer.enabled and config.printer.queue == "zebra-1"
    assert dict(config.printer.options) == {"media": "Custom.50x30mm"}
    assert config.printer.keep == tmp_path / "pdfs"
    assert config.products[1].qr == "https://c.example/c/{uci}"
    assert config.products[0].qr == "{uci}"
    assert (config.printer.language, config.printer.dpi, config.printer.kind) == (
        "pdf", 203, "cups")
    zebra = load(write_config(tmp_path, CONFIG_TEXT + """
[printer]
language = "zpl"
dpi = 300
socket = "zebra-7.line.example:9100"
""")).printer
    assert zebra.enabled and zebra.kind == "socket" and zebra.language == "zpl"
    assert zebra.socket == ("zebra-7.line.example", 9100) and zebra.dpi == 300
    assert zebra.name == "zebra-7.line.example:9100"


def test_every_upstream_kind_and_driver_has_a_parser() -> None:
    # The Literal types name the kinds and drivers; their parsers register separately.
    assert list(PARSERS) == list(UPSTREAM_KINDS)
    assert list(SETTINGS) == list(DRIVERS)
    assert list(PRINTERS) == list(get_args(PrinterKind))
    assert set(SETTINGS) <= {f.name for f in fields(Fixture)}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "nope.toml")


def test_config_check_command(tmp_path: Path) -> None:
    good = run_cli(None, "config", "check", str(write_config(tmp_path)))
    assert "OK" in good.stdout and "test-station" in good.stdout
    bad_path = tmp_path / "bad" / "station.toml"
    bad_path.parent.mkdir()
    bad_path.write_text(_replace('claim = "pre"', 'claim = "soon"'))
    bad = run_cli(None, "config", "check", str(bad_path), check=False)
    assert bad.returncode == 2
    assert f"{bad_path}: products[1].claim: must be one of" in bad.stderr


def test_serve_refuses_a_bad_config_at_start(tmp_path: Path) -> None:
    path = write_config(tmp_path, _replace("max_body_bytes = 4096", "max_body_bytes = 'x'"))
    result = run_cli(path, "serve", check=False)
    assert result.returncode == 2
    assert "station.max_body_bytes: must be an integer" in result.stderr
    assert not (tmp_path / "journal.sqlite").exists()
