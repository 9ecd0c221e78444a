"""Reading labels back for tests: native ZPL through an independent renderer (zplkit, a Rust
ZPL engine on PyPI that runs offline, modelled on a ZD621's firmware), PDFs through poppler,
and the symbols on either with zxing-cpp, which also says where each one is."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import zplkit
import zxingcpp
from PIL import Image


@dataclass(frozen=True)
class Symbol:
    format: str
    text: str
    left: int  # dots from the label's top-left corner: the symbol's bounding box
    top: int


def zpl_image(zpl: bytes, width: int, height: int, dpi: int) -> Image.Image:
    """The first label of `zpl` as the renderer prints it (gray, 1 pixel a dot)."""
    document = zplkit.render(zpl, zplkit.Options(dpi=dpi, width=width, height=height))
    raster = document.labels[0].rasterize()
    return Image.frombytes("L", (raster.width, raster.height), raster.pixels)


def pdf_image(pdf: Path, dpi: int) -> Image.Image:
    """The first page of `pdf` rendered by poppler at `dpi`."""
    out = subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-singlefile", "-f", "1",
                          "-l", "1", str(pdf)], capture_output=True, check=True).stdout
    return _pnm(out)


def symbols(image: Image.Image) -> list[Symbol]:
    """Every QR and Code 128 zxing-cpp reads on `image`, top to bottom."""
    found = []
    for barcode in zxingcpp.read_barcodes(image):
        if barcode.format.name not in ("QRCode", "Code128"):
            continue
        corners = [barcode.position.top_left, barcode.position.top_right,
                   barcode.position.bottom_left, barcode.position.bottom_right]
        found.append(Symbol(barcode.format.name, barcode.text, min(p.x for p in corners),
                            min(p.y for p in corners)))
    return sorted(found, key=lambda s: (s.top, s.left))


def _pnm(data: bytes) -> Image.Image:
    import io

    return Image.open(io.BytesIO(data)).convert("L")
