"""Native ZPL labels (`[printer] language = "zpl"`): what we send, rendered by an independent
ZPL engine (zplkit, tests/zpl_reading.py), reads back as the unit's QR and Code 128, in the
same places as on the PDF of the same template; what ZPL cannot draw is refused at start."""

from __future__ import annotations

import datetime
import random
import string
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from factory import uci as ucis
from factory.labels.elements import Text
from factory.labels.errors import TemplateError
from factory.labels.layout import Barcode, LabelData, QrSymbol, layout
from factory.labels.render import render_labels
from factory.labels.symbols import LEVELS, qr_matrix, qr_size
from factory.labels.template import Template, load_template
from factory.labels.zpl import check, dots, label_zpl, render_zpl
from tests.conftest import CONFIG_TEXT, PRODUCT, ROOT, run_cli, write_config
from tests.zpl_reading import pdf_image, symbols, zpl_image

UCI = ucis.encode(0x5A17_0000_0000_0000_0042)
CLAIM = f"https://claim.example.com/c/{UCI}"
# A label with every element ZPL draws, and field data that would be commands if unescaped.
WITH_BARCODE = """\
[page]
unit = "mm"
width = 64
height = 40
margin = 1.5
dpi = 203

[[text]]
name = "product"
text = "{name}"
x = 1.5
y = 1.5
width = 34
size = 8
min_size = 5

[[text]]
name = "model"
text = "{model}"
x = 1.5
y = 12
width = 34
size = 9
align = "right"

[[qr]]
name = "claim"
content = "https://claim.example.com/c/{uci}"
x = 38
y = 0
size = 24
level = "Q"

[[code128]]
name = "uci"
content = "{uci}"
x = 1.5
y = 26
width = 61
height = 10
"""


def data(name: str = "Aqua ^XZ~JA_5E Sensor") -> LabelData:
    return LabelData(uci=UCI, product=PRODUCT, name=name, model="AQ-100",
                     date=datetime.date(2026, 12, 7), claim_secret="ABCD-EFGH-JKMN-PQRS")


def template(tmp_path: Path, name: str) -> Template:
    if name == "with-barcode":
        path = tmp_path / "with-barcode.toml"
        path.write_text(WITH_BARCODE)
        return load_template(path)
    return load_template(ROOT / "labels" / f"{name}.toml")


def as_zpl(tmp_path: Path, chosen: Template, dpi: int = 203) -> tuple[bytes, Image.Image]:
    out = tmp_path / "label.zpl"
    assert render_zpl(chosen, [data()], out, dpi) == 1
    zpl = out.read_bytes()
    page = chosen.page
    return zpl, zpl_image(zpl, dots(page.width, dpi), dots(page.height, dpi), dpi)


@pytest.mark.parametrize("name", ["thermal-50x30-secret", "with-barcode"])
def test_native_zpl_reads_back_in_an_independent_renderer(tmp_path: Path, name: str) -> None:
    chosen = template(tmp_path, name)
    zpl, image = as_zpl(tmp_path, chosen)
    expected = [("QRCode", CLAIM)] + ([("Code128", UCI)] if name == "with-barcode" else [])
    assert sorted((s.format, s.text) for s in symbols(image)) == sorted(expected)
    # The printer draws the symbols: no bitmap goes over the wire, and it is small.
    assert b"^BQN,2," in zpl and b"^GF" not in zpl and len(zpl) < 1500
    # Field data never turns into commands: one format, the name hex-escaped.
    assert zpl.count(b"^XA") == 1 and zpl.count(b"^XZ") == 1 and b"~JA" not in zpl
    assert b"Aqua _5EXZ_7EJA_5F5E Sensor" in zpl


@pytest.mark.parametrize("name", ["thermal-50x30", "with-barcode"])
def test_pdf_and_zpl_put_the_symbols_in_the_same_places(tmp_path: Path, name: str) -> None:
    chosen = template(tmp_path, name)
    _, zpl = as_zpl(tmp_path, chosen)
    pdf = tmp_path / "label.pdf"
    render_labels(chosen, [data()], pdf)
    on_pdf, on_zpl = symbols(pdf_image(pdf, 203)), symbols(zpl)
    modules = {QrSymbol: 0.0, Barcode: 0.0}
    for item in layout(chosen, data()).items:
        if isinstance(item, QrSymbol | Barcode):
            modules[type(item)] = item.module * 203 / 25.4
    assert [s.format for s in on_pdf] == [s.format for s in on_zpl] and on_pdf
    for a, b in zip(on_pdf, on_zpl, strict=True):
        module = modules[QrSymbol if a.format == "QRCode" else Barcode]
        assert a.text == b.text
        assert abs(a.left - b.left) <= module and abs(a.top - b.top) <= module, (a, b)


def test_templates_zpl_cannot_draw_are_refused(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("L", (8, 8)).save(logo)
    path = tmp_path / "logo.toml"
    path.write_text(WITH_BARCODE.replace("[[code128]]", """[[image]]
name = "logo"
path = "logo.png"
x = 2
y = 20
width = 5
height = 5

[[code128]]"""))
    with pytest.raises(TemplateError) as refused:
        check(load_template(path), 203)
    assert refused.value.template == str(path) and "logo" in refused.value.element
    assert "language = \"pdf\"" in refused.value.reason
    # A QR module of 14 dots: more than ^BQ's largest magnification.
    carton = load_template(ROOT / "labels" / "carton-4x6in.toml")
    with pytest.raises(TemplateError, match="1 to 10"):
        check(carton, 203, layout(carton, data("Aqua")))


def test_config_check_refuses_zpl_with_an_image_and_cli_renders_zpl(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.new("L", (8, 8)).save(labels / "logo.png")
    (labels / "logo.toml").write_text(WITH_BARCODE.replace("[[code128]]", """[[image]]
name = "logo"
path = "logo.png"
x = 2
y = 20
width = 5
height = 5

[[code128]]"""))
    (labels / "plain.toml").write_text(WITH_BARCODE)
    text = CONFIG_TEXT.replace('journal = "journal.sqlite"',
                               f'journal = "journal.sqlite"\nlabels = "{labels}"')
    printer = '\n[printer]\nlanguage = "zpl"\ndpi = 203\n'
    bad = write_config(tmp_path, text.replace('model = "AQ-100"',
                                              'model = "AQ-100"\nlabel = "logo"') + printer)
    refused = run_cli(None, "config", "check", str(bad), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{labels / 'logo.toml'}: image[0] 'logo'" in refused.stderr
    assert "cannot be printed as native ZPL" in refused.stderr

    good = write_config(tmp_path, text.replace('model = "AQ-100"',
                                               'model = "AQ-100"\nlabel = "plain"') + printer)
    uci = run_cli(good, "issue", "--product", PRODUCT).stdout.split()[0]
    out = tmp_path / "out.zpl"
    said = run_cli(good, "label", "render", uci, "--format", "zpl", "-o", str(out)).stdout
    assert "1 label(s) in ZPL at 203 dpi" in said
    image = zpl_image(out.read_bytes(), dots(64, 203), dots(40, 203), 203)
    # The product's own QR content ("{uci}" unless it sets qr) replaces the template's.
    assert sorted((s.format, s.text) for s in symbols(image)) == [
        ("Code128", ucis.parse(uci)), ("QRCode", ucis.parse(uci))]


def test_qr_size_without_encoding_is_the_encoded_size() -> None:
    """What ZPL layout places by (the printer encodes the symbol) equals the real symbol's
    size, for claim URLs of any UCI (digit-heavy ones too) and for mixed contents near
    version boundaries, where the shortcut must fall back to encoding."""
    rng = random.Random(18)
    values = [ucis.encode(rng.getrandbits(80)) for _ in range(300)]
    values += [ucis.encode(n) for n in range(0, 10**6, 9973)]  # leading zeros: numeric runs
    contents = [f"https://claim.example.com/c/{v}" for v in values] + values
    classes = [string.digits, string.ascii_uppercase + " $%*+-./:", "abc~"]
    for _ in range(400):
        pick = [rng.choice(classes) for _ in range(rng.randint(1, 4))]
        contents.append("".join(rng.choice(rng.choice(pick)) for _ in range(rng.randint(1, 90))))
    for content in contents:
        level = rng.choice(LEVELS)
        assert qr_size(content, level) == qr_matrix(content, level).size, (content, level)


@pytest.mark.parametrize("name", ["MMMMMMMMMMMMMM", "Acme Air Quality Sensor Pro"])
def test_printer_font_text_stays_in_its_box(name: str) -> None:
    """Names the PDF shrinks to fit also fit in font 0 at that size (it is narrower than
    Helvetica Bold): no ink past the box, none wrapped onto a second line."""
    chosen = load_template(ROOT / "labels" / "thermal-50x30.toml")
    label = layout(chosen, data(name))
    image = zpl_image(label_zpl(chosen, label, 203), 400, 240, 203)
    box = next(e for e in chosen.elements if isinstance(e, Text) and e.name.endswith("'product'"))
    qr = dots(28, 203)  # where the QR's square (quiet zone included) starts
    ink = ImageOps.invert(image).crop((0, 0, qr, dots(box.y + 3.7, 203))).getbbox()
    assert ink is not None and ink[0] >= dots(box.x, 203) - 1
    assert ink[2] <= dots(box.x + box.width, 203)
