"""Label templates: the shipped ones load, bad ones name the file and the element, and layout
(pure: no PDF) places a unit's data or refuses content that does not fit."""

from __future__ import annotations

import dataclasses
import datetime
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from reportlab.pdfbase import pdfmetrics

from factory import uci
from factory.config import Product
from factory.labels import metrics, placeholders, symbols
from factory.labels.elements import Qr
from factory.labels.errors import ContentError, TemplateError
from factory.labels.layout import LabelData, QrSymbol, TextRun, check_product, layout
from factory.labels.sheet import load_sheet
from factory.labels.template import load_template

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "labels"

BASE = """
[page]
width = 50
height = 30
margin = 1.5

[[text]]
name = "claim-id"
text = "Claim ID {human}"
x = 1.5
y = 1.5
width = 47
size = 7
font = "Courier"

[[qr]]
name = "claim"
content = "https://claim.example.com/c/{uci}"
x = 1
y = 5
size = 24
"""
DATA = LabelData(uci=uci.encode(1), product="P-1", name="Acme Air Sensor", model="AQ-100",
                 date=datetime.date(2026, 11, 23))


def write(folder: Path, text: str, name: str = "label.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_shipped_label_templates_load() -> None:
    names = {p.stem for p in LABELS.glob("*.toml")}
    assert {"thermal-50x30", "office-70x37", "a4-3x8", "carton-4x6in"} <= names
    thermal = load_template(LABELS / "thermal-50x30.toml")
    assert (thermal.page.width, thermal.page.height, thermal.page.dpi) == (50, 30, 203)
    assert {e.name for e in thermal.elements} >= {"qr[0] 'claim'", "text[4] 'claim-id'"}
    carton = load_template(LABELS / "carton-4x6in.toml")  # written in inches
    assert (carton.page.width, carton.page.height) == pytest.approx((101.6, 152.4))
    sheet = load_sheet(LABELS / "a4-3x8.toml")
    assert (sheet.width, sheet.height, sheet.cells) == (210, 297, 24)
    assert sheet.label.source == (LABELS / "office-70x37.toml")
    assert [sheet.cell(n) for n in (0, 4, 23)] == [(0, 0.5), (70, 37.5), (140, 259.5)]


def _replace(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


BAD_TEMPLATES = [
    # (the template text, the element the error must name, words the reason must contain)
    ("[page\nwidth = 50", "", "is not valid TOML"),
    ("[[qr]]\nx = 1", "", "page: is required"),
    (BASE + "\n[colours]\nink = 1", "", "colours: is not a known setting"),
    (_replace("margin = 1.5", "margin = 1.5\ncolour = 'red'"), "page", "colour: is not a known"),
    (_replace("size = 24", "size = 24\ncolour = 'red'"), "qr[0] 'claim'", "colour: is not a known"),
    (_replace("margin = 1.5", "margin = 1.5\nunit = 'cm'"), "page", "unit: must be one of mm, in"),
    (_replace("margin = 1.5", "margin = [1, 2]"), "page", "[top, right, bottom, left]"),
    (_replace("margin = 1.5", "margin = [1, 1, true, 1]"), "page", "[top, right, bottom, left]"),
    ("page = 5\n", "", "page: must be a table"),
    (_replace("size = 7", "size = 'big'"), "text[0] 'claim-id'", "size: must be a number"),
    (_replace("size = 7", "size = true"), "text[0] 'claim-id'", "size: must be a number"),
    (_replace("width = 47", "width = 48"), "text[0] 'claim-id'", "falls off the label"),
    (_replace("y = 5", "y = 9"), "qr[0] 'claim'", "falls off the label"),
    (_replace("x = 1\n", "x = 27\n"), "qr[0] 'claim'", "falls off the page with its quiet"),
    (_replace("x = 1\n", "x = -0.5\n"), "qr[0] 'claim'", "x: must be at least 0"),
    (_replace("size = 24", "size = 9"), "qr[0] 'claim'", "below the 0.25 mm"),
    (_replace("size = 24", "size = 24\nlevel = 'X'"), "qr[0] 'claim'", "level: must be one of"),
    (_replace("size = 24", "size = 24\nquiet_zone = 1"), "qr[0] 'claim'", "quiet_zone"),
    (_replace("{uci}\"", "{serial}\""), "qr[0] 'claim'", "unknown placeholder {serial}"),
    (_replace("{uci}\"", "{uci:>20}\""), "qr[0] 'claim'", "takes no format spec"),
    (_replace("{uci}\"", "{uci.lower}\""), "qr[0] 'claim'", "unknown placeholder"),
    (_replace("{uci}\"", "{uci\""), "qr[0] 'claim'", "is not a format string"),
    (_replace("Claim ID {human}", "{human} ✓"), "text[0] 'claim-id'", "WinAnsi"),
    (_replace("size = 7", "size = 9"), "text[0] 'claim-id'", "widest form"),
    (_replace("size = 7", "size = 7\nmin_size = 8"), "text[0] 'claim-id'", "larger than size"),
    (_replace('"Courier"', '"Comic Sans"'), "text[0] 'claim-id'", "font: must be"),
    (BASE + "[[code128]]\nname = 'uci'\nx = 1.5\ny = 25\nwidth = 47\nheight = 3\n",
     "code128[0] 'uci'", "bar module would be"),
    (BASE + "[[code128]]\nname = 'uci'\ncontent = 'Grüße'\nx = 1.5\ny = 25\nwidth = 47\n"
     "height = 3\n", "code128[0] 'uci'", "printable ASCII"),
    (BASE + "[[image]]\nname = 'logo'\npath = 'missing.png'\nx = 30\ny = 10\nwidth = 10\n"
     "height = 10\n", "image[0] 'logo'", "cannot be read"),
    (BASE + "[[image]]\nname = 'logo'\npath = 'label.toml'\nx = 30\ny = 10\nwidth = 10\n"
     "height = 10\n", "image[0] 'logo'", "not a PNG or JPEG"),
    ("[page]\nwidth = 50\nheight = 30\n", "", "has no elements"),
    ((LABELS / "a4-3x8.toml").read_text(), "", "is a sheet template"),
]


@pytest.mark.parametrize(("text", "element", "reason"), BAD_TEMPLATES)
def test_bad_template_names_file_and_element(tmp_path: Path, text: str, element: str,
                                             reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TemplateError) as caught:
        load_template(path)
    error = caught.value
    assert (error.template, error.element) == (str(path), element)
    assert reason in error.reason
    assert str(error).startswith(f"{path}: {element}" if element else f"{path}: ")


def test_the_base_of_the_bad_templates_is_good(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, BASE))
    assert [type(e).__name__ for e in template.elements] == ["Text", "Qr"]


def test_qr_size_check_uses_the_longest_content_and_the_print_head(tmp_path: Path) -> None:
    # 29 modules + 2 x 4 quiet = 37: 9.25 mm is exactly 0.25 mm a module...
    exact = _replace("size = 24", "size = 9.25")
    assert load_template(write(tmp_path, exact))
    # ...but a dot of a 203 dpi head is 0.12512 mm: 0.25 mm snaps down to one dot. Refused,
    # with the size that gives two dots a module.
    at_203 = exact.replace("margin = 1.5", "margin = 1.5\ndpi = 203")
    with pytest.raises(TemplateError, match=r"0\.125 mm, below .* make size at least 9\.26 mm"):
        load_template(write(tmp_path, at_203))
    assert load_template(write(tmp_path, at_203.replace("size = 9.25", "size = 9.26")))


def test_product_qr_content_is_checked_like_the_template(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, _replace("size = 24", "size = 12")))
    qr = template.elements[1]
    assert isinstance(qr, Qr)
    assert template.with_qr_content("{uci}").elements[1] == dataclasses.replace(
        qr, content="{uci}")
    with pytest.raises(TemplateError, match=r"qr\[0\] 'claim': size: a module would be"):
        template.with_qr_content("https://claim.example.com/devices/claim?id={uci}&s={name}")
    with pytest.raises(TemplateError, match=r"qr\[0\] 'claim': content: unknown placeholder"):
        template.with_qr_content("{serial}")
    assert template.with_qr_content("") is template  # the product gives none: keep the template's


def test_bad_sheets_name_the_sheet(tmp_path: Path) -> None:
    write(tmp_path, BASE, "cell.toml")
    sheet = "[sheet]\nlabel = 'cell.toml'\nsize = 'A4'\ncolumns = 4\nrows = 9\npitch = [{}]\n"
    path = write(tmp_path, sheet.format("50, 30"), "sheet.toml")
    assert load_sheet(path).cells == 36  # 200 x 270 mm of an A4 page
    cases = [("49, 30", "labels would overlap"),
             ("55, 33", "grid covers x 0..215 mm, y 0..294 mm; the page is 210 x 297 mm")]
    for pitch, reason in cases:
        path = write(tmp_path, sheet.format(pitch), "sheet.toml")
        with pytest.raises(TemplateError) as caught:
            load_sheet(path)
        assert (caught.value.template, caught.value.element) == (str(path), "sheet")
        assert reason in caught.value.reason
    path = write(tmp_path, sheet.format("50, 30").replace("cell.toml", "nope.toml"), "sheet.toml")
    with pytest.raises(TemplateError, match=r"nope\.toml: cannot be read"):
        load_sheet(path)


def test_font_metrics_match_reportlab() -> None:
    text = "".join(chr(c) for c in range(32, 127)) + "ÄÖÜßé€–"
    for font in metrics.FONTS:
        assert metrics.text_width(text, font, 9) == pytest.approx(
            pdmetrics_width(text, font, 9))
        face = pdfmetrics.getFont(font).face  # type: ignore[attr-defined]
        assert (metrics.FONTS[font].ascent, metrics.FONTS[font].descent) == (
            face.ascent, face.descent)


def pdmetrics_width(text: str, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


@pytest.mark.parametrize("fmt", ["https://claim.example.com/c/{uci}", "{uci}", "{human}",
                                 "HTTPS://CLAIM.EXAMPLE.COM/C/{uci}?d={date}"])
def test_no_real_content_needs_a_bigger_qr_than_the_worst_case(fmt: str) -> None:
    rng = random.Random(4)
    values = [uci.encode(n) for n in (0, 1, 32, 33, 34, 35, 36, (1 << 80) - 1)]
    values += [uci.encode(rng.getrandbits(80)) for _ in range(300)]
    for level in symbols.LEVELS:
        worst = symbols.qr_matrix(placeholders.worst_case(fmt), level).size
        for value in values:
            content = fmt.format(uci=value, human=uci.human(value), date="2026-11-23")
            assert symbols.qr_matrix(content, level).size <= worst, (content, level)


def test_layout_places_text_and_qr() -> None:
    template = load_template(LABELS / "thermal-50x30.toml")
    label = layout(template, DATA)
    texts = {item.text: item for item in label.items if isinstance(item, TextRun)}
    assert set(texts) == {"Acme Air Sensor", "AQ-100", "2026-11-23", "Claim ID",
                          "0000-0000-0000-0001-1"}
    assert texts["0000-0000-0000-0001-1"].font == "Courier-Bold"
    (qr,) = [item for item in label.items if isinstance(item, QrSymbol)]
    assert qr.content == "https://claim.example.com/c/0000000000000001"
    assert qr.module == pytest.approx(4 * 25.4 / 203)  # snapped to whole dots of the head
    side = qr.size * qr.module
    assert qr.x == pytest.approx(28 + (22 - side) / 2)


def test_layout_aligns_and_shrinks_text(tmp_path: Path) -> None:
    text = BASE + "".join(
        f"[[text]]\ntext = '{{name}}'\nx = 27\ny = {y}\nwidth = 21\nsize = 6\nmin_size = 5\n"
        f"align = '{align}'\n" for y, align in ((10, "left"), (14, "center"), (18, "right")))
    template = load_template(write(tmp_path, text))
    runs = [item for item in layout(template, DATA).items if isinstance(item, TextRun)][1:]
    width = metrics.text_width("Acme Air Sensor", "Helvetica", 6) * 25.4 / 72
    assert [run.x for run in runs] == pytest.approx([27, 27 + (21 - width) / 2, 48 - width])
    longer = dataclasses.replace(DATA, name="Acme Air Sensor Pro X2")
    runs = [item for item in layout(template, longer).items if isinstance(item, TextRun)][1:]
    assert 5 <= runs[0].size < 6 and runs[2].x == pytest.approx(27)  # shrunk to fit exactly
    with pytest.raises(ContentError, match=r"text\[1\]: label 0000000000000001: .* 5 pt"):
        layout(template, dataclasses.replace(DATA, name="Acme Air Sensor Professional"))


@pytest.mark.parametrize(("change", "content", "reason"), [
    ({"uci": "0000-0000-0000-0001-1"}, "{uci}", "canonical UCI (0000000000000001)"),
    ({"uci": "000000000000000"}, "{uci}", "a UCI has 16 symbols"),
    ({"date": None}, "{uci}/{date}", "{date} has no value"),
    ({"claim_secret": None}, "{uci}/{claim_secret}", "{claim_secret} has no value"),
    ({"claim_secret": "s" * 65}, "{uci}/{claim_secret}", "65 bytes"),
    ({"name": "Acme\nAir"}, "{uci}", "control character"),
    ({"name": "Acme ✓"}, "{uci}", "WinAnsi"),
])
def test_layout_refuses_content_that_does_not_fit(tmp_path: Path, change: dict[str, object],
                                                  content: str, reason: str) -> None:
    text = _replace("Claim ID {human}", "{name}").replace("size = 7", "size = 7\nmin_size = 5")
    template = load_template(write(tmp_path, text)).with_qr_content(content)
    with pytest.raises(ContentError) as caught:
        layout(template, dataclasses.replace(DATA, **change))  # type: ignore[arg-type]
    assert caught.value.template == str(tmp_path / "label.toml")
    assert reason in str(caught.value)


def test_layout_is_pure() -> None:
    # What a label shows is decided without the PDF edge or image libraries.
    code = ("import sys, factory.labels.layout, factory.labels.sheet; "
            "print(sorted(m for m in ('reportlab', 'PIL', 'factory.labels.render') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_label_data_for_a_configured_product() -> None:
    product = Product(id="01H4R15D3Q7K9M2X8Z5V6W4T0N", name="Acme Hub", model="H-2")
    data = LabelData.for_product(product, uci.encode(5), date=datetime.date(2026, 1, 2))
    assert data == LabelData(uci="0000000000000005", product=product.id, name="Acme Hub",
                             model="H-2", date=datetime.date(2026, 1, 2))


def test_a_product_that_cannot_fit_its_template_is_found_at_start_up(tmp_path: Path) -> None:
    template = load_template(LABELS / "thermal-50x30.toml")
    check_product(template, Product(id="P-1", name="Acme Air Sensor", model="AQ-100"))
    long_name = Product(id="P-1", name="Acme Air Quality Sensor Professional", model="AQ-100")
    with pytest.raises(ContentError, match=r"text\[0\] 'product': .* the box is 26\.0 mm"):
        check_product(template, long_name)
    with pytest.raises(ContentError, match=r"qr\[0\] 'claim': .* \{model\} is 40 bytes"):
        check_product(load_template(write(tmp_path, BASE)).with_qr_content("{uci}/{model}"),
                      Product(id="P-1", name="Acme", model="m1" * 20))


def test_image_element_is_positioned_from_the_template_folder(tmp_path: Path) -> None:
    (tmp_path / "art").mkdir()
    Image.new("L", (40, 20), 0).save(tmp_path / "art" / "logo.png")
    text = BASE + "[[image]]\nname = 'logo'\npath = 'art/logo.png'\nx = 30\ny = 8\nwidth = 18\n" \
                  "height = 9\n"
    template = load_template(write(tmp_path, text))
    assert template.elements[-1].path == tmp_path / "art" / "logo.png"  # type: ignore[union-attr]
    assert isinstance(template.elements[1], Qr)
