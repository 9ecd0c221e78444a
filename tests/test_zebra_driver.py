"""Our label PDFs through CUPS's own Zebra ZPL driver (Debian's `drv:///sample.drv/zebra.ppd`,
filter `rastertolabel`), on a private cupsd whose "printer" is a TCP listener: the ZPL the
driver sends is decoded back into a bitmap (tests/zpl_graphic.py), and its QR must read as the
unit's claim URL, its ink where the PDF has it."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from factory import uci as ucis
from factory.labels.layout import LabelData
from factory.labels.printers.cups.ipp import wait_printed
from factory.labels.printers.cups.lp import submit
from factory.labels.render import render_labels
from factory.labels.template import load_template
from tests.conftest import ROOT
from tests.cups import Device, private_cups
from tests.zpl_graphic import decode_rows, graphics

ZEBRA_PPD = "drv:///sample.drv/zebra.ppd"


@pytest.mark.parametrize(("data", "per_row", "rows"), [
    (b"FF00\n0F0F\n", 2, ["ff00", "0f0f"]),  # plain hex, one row a line
    (b"FF00\n,\n:\n:", 2, ["ff00", "0000", "0000", "0000"]),  # `,` zero-fills, `:` repeats
    (b"F!\n8,", 2, ["ffff", "8000"]),  # `!` fills with ones
    (b"IF0", 2, ["fff0"]),  # I = 3 of the next digit
    (b"gFJ0", 12, ["f" * 20 + "0000"]),  # g = 20, J = 4
    (b"hGF,", 24, ["f" * 41 + "0" * 7]),  # counts add up: h (40) + G (1)
    (b"zF!", 201, ["f" * 402]),  # z = 400
])
def test_decoder_reads_zpl_compressed_hex(data: bytes, per_row: int, rows: list[str]) -> None:
    assert [r.hex() for r in decode_rows(data, per_row, per_row * len(rows))] == rows


@pytest.mark.parametrize("data", [b"FFF", b"FF0", b"FFFFFF", b"FX"])
def test_decoder_refuses_what_is_not_one_graphic(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_rows(data, 1, 2)


def qr_codes(image: Image.Image, path: Path) -> list[str]:
    image.save(path)
    out = subprocess.run(["zbarimg", "-q", "--raw", "-Sdisable", "-Sqrcode.enable", str(path)],
                         capture_output=True, text=True, check=False).stdout
    return out.splitlines()


async def test_a_label_pdf_prints_right_through_cups_zebra_zpl_driver(tmp_path: Path) -> None:
    template = load_template(ROOT / "labels" / "thermal-50x30.toml")
    uci = ucis.encode(0x5A17_0000_0000_0000_0042)
    pdf = tmp_path / "label.pdf"
    render_labels(template, [LabelData(uci=uci, product="aqua", name="Aqua Sensor",
                                       model="AQ-100", date=datetime.date(2026, 12, 7))], pdf)
    zebra = Device()
    await zebra.start()
    try:
        async with private_cups(tmp_path) as cups:
            models = await cups.admin("lpinfo", "-m")
            assert f"{ZEBRA_PPD} Zebra ZPL Label Printer" in models
            await cups.add_queue("zebra", f"socket://127.0.0.1:{zebra.port}", ZEBRA_PPD)
            job = await submit(pdf, "zebra", title="label", server=cups.server,
                               options={"PageSize": "Custom.50x30mm", "Resolution": "203dpi"})
            await wait_printed(job, 30, cups.server)
            [zpl] = await zebra.wait_jobs(1)
    finally:
        await zebra.stop()
    assert b"^XA" in zpl and b"^XZ" in zpl and b"%PDF" not in zpl
    assert b"^PW400" in zpl  # 50 mm at 203 dpi
    [graphic] = graphics(zpl)
    label = graphic.image()
    assert label.size == (400, 240)  # 50 x 30 mm at 203 dpi
    assert qr_codes(label, tmp_path / "zebra.png") == [f"https://claim.example.com/c/{uci}"]
    # Text and all: the driver's dots are where poppler puts the PDF's ink at 203 dpi (edges
    # differ between the two rasterisers; a shifted, scaled or turned label differs a lot).
    subprocess.run(["pdftoppm", "-r", "203", "-mono", "-png", "-singlefile", str(pdf),
                    str(tmp_path / "poppler")], check=True)
    poppler = Image.open(tmp_path / "poppler.png").convert("L")
    zebra_gray = label.convert("L")
    assert poppler.size == zebra_gray.size
    differ = ImageChops.difference(poppler, zebra_gray).point(lambda v: 255 if v > 128 else 0)
    pixels = label.size[0] * label.size[1]
    assert differ.histogram()[255] / pixels < 0.04
    ink = [image.point(lambda v: 255 if v < 128 else 0).histogram()[255] / pixels
           for image in (poppler, zebra_gray)]
    assert ink[0] > 0.08 and abs(ink[0] - ink[1]) < 0.01
