"""Label PDFs read back the way a person and a scanner would: every page rasterised with
poppler's pdftoppm, every QR and barcode decoded by real decoders (zxing-cpp's reader and
zbar's zbarimg) and compared byte for byte with what was meant; the text read by pdftotext."""

from __future__ import annotations

import datetime
import io
import itertools
import re
import subprocess
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from factory import uci
from factory.labels.errors import ContentError, LabelError
from factory.labels.layout import LabelData, QrSymbol, layout
from factory.labels.render import render_labels, render_sheet
from factory.labels.sheet import load_sheet
from factory.labels.symbols import dark_runs
from factory.labels.template import load_template

LABELS = Path(__file__).resolve().parent.parent / "labels"
URL = "https://claim.example.com/c/"
SYMBOLOGIES = zxingcpp.barcode_formats_from_str("QRCode,Code128")
# Leading zeros, all 32 symbols, the largest UCI, and the five check symbols outside 0-9A-Z
# (* ~ $ = U: '~' and '=' push a {human} QR into byte mode).
UCIS = [uci.encode(0), uci.encode(1), "0123456789ABCDEF", "GHJKMNPQRSTVWXYZ",
        uci.encode((1 << 80) - 1), *(uci.encode(n) for n in range(32, 37))]


def data(value: str, name: str = "Acme Air Sensor") -> LabelData:
    return LabelData(uci=value, product="01H4R15D3Q7K9M2X8Z5V6W4T0N", name=name,
                     model="AQ-100", date=datetime.date(2026, 11, 23))


def rasterise(pdf: Path, dpi: int = 300) -> list[Image.Image]:
    prefix = pdf.with_suffix("")
    done = subprocess.run(["pdftoppm", "-r", str(dpi), "-png", pdf, prefix],
                          capture_output=True, text=True, check=True)
    assert done.stderr == ""  # poppler reports any malformed object here
    pages = sorted(pdf.parent.glob(f"{prefix.name}-*.png"))
    return [Image.open(page).convert("L") for page in pages]


def decode(page: Image.Image) -> list[zxingcpp.Barcode]:
    return zxingcpp.read_barcodes(page, formats=SYMBOLOGIES)


def page_texts(pdf: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", pdf, "-"], capture_output=True, text=True,
                         check=True).stdout
    return out.split("\f")[:-1]


def page_sizes(pdf: Path) -> list[tuple[float, float]]:
    out = subprocess.run(["pdfinfo", "-f", "1", "-l", "100000", pdf], capture_output=True,
                         text=True, check=True).stdout
    return [(float(w), float(h))
            for w, h in re.findall(r"Page +\d+ size: +([\d.]+) x ([\d.]+) pts", out)]


def test_thermal_labels_read_back_exactly(tmp_path: Path) -> None:
    template = load_template(LABELS / "thermal-50x30.toml")
    pdf = tmp_path / "labels.pdf"
    assert render_labels(template, (data(u) for u in UCIS), pdf) == len(UCIS)

    assert page_sizes(pdf) == [(141.732, 85.039)] * len(UCIS)  # 50 x 30 mm
    pages = rasterise(pdf)
    assert len(pages) == len(UCIS)
    for value, page, text in zip(UCIS, pages, page_texts(pdf), strict=True):
        (symbol,) = decode(page)
        assert symbol.format == zxingcpp.BarcodeFormat.QRCode
        assert symbol.bytes == f"{URL}{value}".encode()
        assert "Claim ID" in text and uci.human(value) in text and "Acme Air Sensor" in text
    # A second, unrelated decoder reads the same.
    zbar = subprocess.run(["zbarimg", "-q", "--raw", "-Sdisable", "-Sqrcode.enable",
                           *sorted(tmp_path.glob("labels-*.png"))],
                          capture_output=True, text=True, check=True).stdout
    assert zbar.splitlines() == [f"{URL}{value}" for value in UCIS]
    fonts = subprocess.run(["pdffonts", pdf], capture_output=True, text=True, check=True).stdout
    assert re.findall(r"^(\S+) +Type 1 +WinAnsi +no", fonts, re.M) == [
        "Helvetica-Bold", "Helvetica", "Courier-Bold"]  # the standard fonts, not embedded


@pytest.mark.parametrize("content", ["{uci}", "{human}", "{product}:{uci}"])
def test_product_defined_contents_read_back_exactly(tmp_path: Path, content: str) -> None:
    template = load_template(LABELS / "thermal-50x30.toml").with_qr_content(content)
    pdf = tmp_path / "labels.pdf"
    render_labels(template, (data(u) for u in UCIS), pdf)
    for value, page in zip(UCIS, rasterise(pdf), strict=True):
        (symbol,) = decode(page)
        expected = content.format(uci=value, human=uci.human(value),
                                  product="01H4R15D3Q7K9M2X8Z5V6W4T0N")
        assert symbol.bytes == expected.encode()


def test_carton_label_in_inches_with_code128_and_a_logo(tmp_path: Path) -> None:
    logo = Image.new("RGBA", (60, 30), (0, 0, 0, 0))  # transparent around a black block
    logo.paste((0, 0, 0, 255), (10, 5, 50, 25))
    logo.save(tmp_path / "logo.png")
    text = (LABELS / "carton-4x6in.toml").read_text() + (
        "\n[[image]]\nname = 'logo'\npath = 'logo.png'\nx = 3.0\ny = 0.65\nwidth = 0.8\n"
        "height = 0.4\n")
    (tmp_path / "carton.toml").write_text(text)
    template = load_template(tmp_path / "carton.toml")
    pdf = tmp_path / "carton.pdf"
    values = UCIS[:3]
    assert render_labels(template, (data(u) for u in values), pdf) == 3
    raw = pdf.read_bytes()
    assert raw.count(b"/Subtype /Image") == 1  # the logo is embedded once for all pages
    assert page_sizes(pdf) == [(288.0, 432.0)] * 3  # 4 x 6 in
    for value, page in zip(values, rasterise(pdf), strict=True):
        found = {symbol.format: symbol.bytes for symbol in decode(page)}
        assert found == {zxingcpp.BarcodeFormat.QRCode: f"{URL}{value}".encode(),
                         zxingcpp.BarcodeFormat.Code128: value.encode()}
        # The black block prints inside the logo's box, the transparent part stays white.
        box = page.crop((int(3.0 * 300), int(0.65 * 300), int(3.8 * 300), int(1.05 * 300)))
        assert box.getextrema() == (0, 255)
        assert page.getpixel((int(3.4 * 300), int(0.85 * 300))) == 0


def test_sheet_run_fills_cells_in_order(tmp_path: Path) -> None:
    sheet = load_sheet(LABELS / "a4-3x8.toml")
    values = [uci.encode(n) for n in range(1, 31)]
    pdf = tmp_path / "sheet.pdf"
    # The first sheet was partly used already: 20 cells gone, 4 left.
    assert render_sheet(sheet, (data(u) for u in values), pdf, skip=20) == 3
    assert page_sizes(pdf) == [(595.276, 841.89)] * 3  # A4
    found: list[tuple[int, str]] = []  # (cell number across the run, content)
    for number, page in enumerate(rasterise(pdf)):
        for symbol in decode(page):
            x, y = symbol.position.top_left.x, symbol.position.top_left.y
            column, row = int(x / page.width * 3), int(y / page.height * 297 / 37)
            found.append((number * 24 + row * 3 + column, symbol.text))
    assert sorted(found) == [(20 + i, f"{URL}{value}") for i, value in enumerate(values)]
    texts = page_texts(pdf)
    assert [sum(uci.human(v) in page for v in values) for page in texts] == [4, 24, 2]


def test_qr_is_vector_runs_not_an_image(tmp_path: Path) -> None:
    template = load_template(LABELS / "thermal-50x30.toml")
    pdf = tmp_path / "one.pdf"
    render_labels(template, [data(UCIS[1])], pdf)
    raw = pdf.read_bytes()
    assert b"/Subtype /Image" not in raw
    (stream,) = re.findall(rb"stream\n(.*?)\nendstream", raw, re.S)
    content = zlib.decompress(stream).decode()
    (qr,) = [i for i in layout(template, data(UCIS[1])).items if isinstance(i, QrSymbol)]
    assert qr.matrix is not None
    runs = sum(len(dark_runs(row)) for row in qr.matrix.rows)
    dark = sum(row.count(1) for row in qr.matrix.rows)
    assert content.count(" 1 re\n") == runs < dark  # one rectangle per run, not per module


def test_cross_reference_table_points_at_every_object(tmp_path: Path) -> None:
    # Readers repair a broken xref silently (and slowly); a printer's RIP may not.
    pdf = tmp_path / "labels.pdf"
    render_labels(load_template(LABELS / "thermal-50x30.toml"), (data(u) for u in UCIS), pdf)
    raw = pdf.read_bytes()
    tail = re.search(rb"startxref\n(\d+)\n%%EOF\n$", raw)
    assert tail
    start = int(tail.group(1))
    head = re.match(rb"xref\n0 (\d+)\n", raw[start:])
    assert head
    count = int(head.group(1))
    entries = re.findall(rb"(\d{10}) 00000 n \n", raw[start:])
    assert len(entries) == count - 1 == raw.count(b" 0 obj\n")
    for number, offset in enumerate(entries, start=1):
        assert raw[int(offset):].startswith(b"%d 0 obj\n" % number)
    assert b"/Count %d " % len(UCIS) in raw


class CountingSink(io.RawIOBase):
    """A write-only stream that keeps nothing but a byte count (like a pipe to `lp`)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.size += len(data)
        return len(data)


def test_pages_are_written_as_they_come_and_memory_stays_flat() -> None:
    template = load_template(LABELS / "thermal-50x30.toml")
    sink = CountingSink()
    seen: list[int] = []

    def labels(count: int) -> Iterator[LabelData]:
        for n in range(count):
            seen.append(sink.size)
            yield data(uci.encode(n))

    render_labels(template, labels(5), sink)  # type: ignore[arg-type]
    assert all(after > before for before, after in itertools.pairwise(seen))

    def peak(count: int) -> int:
        tracemalloc.start()
        render_labels(template, labels(count), CountingSink())  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    # 10x the labels, not 10x the memory: what grows is 24 bytes of offsets a page.
    small, large = peak(100), peak(1000)
    assert large < small + 128 * 1024, (small, large)


def test_a_failing_run_leaves_no_file(tmp_path: Path) -> None:
    template = load_template(LABELS / "thermal-50x30.toml")
    pdf = tmp_path / "run.pdf"
    pdf.write_bytes(b"the previous run")
    bad = [data(UCIS[0]), data(UCIS[1]), data("0000-0000-0000-0002")]
    with pytest.raises(ContentError, match="canonical UCI"):
        render_labels(template, bad, pdf)
    with pytest.raises(LabelError, match="no labels to render"):
        render_labels(template, [], pdf)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pdf"]
    assert pdf.read_bytes() == b"the previous run"
