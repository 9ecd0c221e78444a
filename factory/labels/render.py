"""The PDF edge: laid-out labels drawn as vector PDF pages, streamed to a file as they come.

QR modules are filled rectangles, one per horizontal run of dark modules, all in one path (so
rasterisers draw their union without seams) in a coordinate system of one module per unit:
a page holds a few hundred short ``c r n 1 re`` operators and stays sharp at any dpi.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from factory.labels.errors import LabelError, TemplateError
from factory.labels.layout import Barcode, Label, LabelData, Picture, QrSymbol, TextRun, layout
from factory.labels.pdf import PdfWriter, number, string
from factory.labels.sheet import Sheet
from factory.labels.symbols import dark_runs
from factory.labels.template import Template

PT_PER_MM = 72 / 25.4


def render_labels(template: Template, labels: Iterable[LabelData],
                  out: IO[bytes] | str | Path) -> int:
    """One page per label into one PDF; returns the number of pages."""
    width, height = template.page.width * PT_PER_MM, template.page.height * PT_PER_MM
    with output_stream(out) as stream:
        pdf = PdfWriter(stream, title=template.name)
        drawer = _Drawer(pdf, template.page.height)
        for data in labels:
            pdf.add_page(width, height, drawer.draw(layout(template, data), 0.0, 0.0))
        _finish(pdf, template.name)
    return pdf.page_count


def render_sheet(sheet: Sheet, labels: Iterable[LabelData], out: IO[bytes] | str | Path, *,
                 skip: int = 0) -> int:
    """Labels in order into the cells of as many sheets as needed; `skip` leaves that many
    cells of the first sheet empty (a sheet already partly used). Returns the page count."""
    if not 0 <= skip < sheet.cells:
        raise LabelError(f"skip must be 0..{sheet.cells - 1} cells, got {skip}")
    width, height = sheet.width * PT_PER_MM, sheet.height * PT_PER_MM
    with output_stream(out) as stream:
        pdf = PdfWriter(stream, title=sheet.source.stem)
        drawer = _Drawer(pdf, sheet.height)
        parts: list[bytes] = []
        cell = skip
        for data in labels:
            x, y = sheet.cell(cell)
            parts.append(drawer.draw(layout(sheet.label, data), x, y))
            cell += 1
            if cell == sheet.cells:
                pdf.add_page(width, height, b"".join(parts))
                parts, cell = [], 0
        if parts:
            pdf.add_page(width, height, b"".join(parts))
        _finish(pdf, sheet.source.stem)
    return pdf.page_count


def _finish(pdf: PdfWriter, name: str) -> None:
    if not pdf.page_count:
        raise LabelError(f"{name}: no labels to render")
    pdf.close()


@contextlib.contextmanager
def output_stream(out: IO[bytes] | str | Path) -> Iterator[IO[bytes]]:
    """A file object as given, or a path written through a temporary file that replaces it
    only when the whole PDF is written (a half-written PDF never has the real name)."""
    if not isinstance(out, str | Path):
        yield out
        return
    out = Path(out)
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        os.replace(temp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class _Drawer:
    """Turns laid-out labels into content-stream bytes for a page `page_height` mm tall."""

    def __init__(self, pdf: PdfWriter, page_height: float) -> None:
        self._pdf = pdf
        self._top = page_height
        self._images: dict[Path, tuple[str, float]] = {}  # path -> (name, width/height)

    def draw(self, label: Label, left: float, top: float) -> bytes:
        """`label` with its top-left corner at (left, top) mm on the page."""
        ops: list[str] = ["0 g\n"]
        for item in label.items:
            if isinstance(item, TextRun):
                self._text(ops, item, left, top)
            elif isinstance(item, QrSymbol):
                self._qr(ops, item, left, top)
            elif isinstance(item, Barcode):
                self._barcode(ops, item, left, top)
            else:
                self._picture(ops, item, left, top)
        return "".join(ops).encode("latin-1")

    def _x(self, x: float) -> str:
        return number(x * PT_PER_MM)

    def _y(self, y: float) -> str:
        return number((self._top - y) * PT_PER_MM)

    def _text(self, ops: list[str], run: TextRun, left: float, top: float) -> None:
        font = self._pdf.font(run.font)
        ops.append(f"BT /{font} {number(run.size)} Tf {self._x(left + run.x)} "
                   f"{self._y(top + run.y)} Td {string(run.text).decode('latin-1')} Tj ET\n")

    def _qr(self, ops: list[str], qr: QrSymbol, left: float, top: float) -> None:
        # One unit per module, y flipped so row r is r modules below the symbol's top.
        assert qr.matrix is not None, "laid out without its modules"
        module = number(qr.module * PT_PER_MM)
        ops.append(f"q {module} 0 0 -{module} {self._x(left + qr.x)} {self._y(top + qr.y)} cm\n")
        for row, cells in enumerate(qr.matrix.rows):
            ops.extend(f"{start} {row} {length} 1 re\n" for start, length in dark_runs(cells))
        ops.append("f Q\n")

    def _barcode(self, ops: list[str], code: Barcode, left: float, top: float) -> None:
        module = number(code.module * PT_PER_MM)
        height = number(code.height * PT_PER_MM)
        bottom = self._y(top + code.y + code.height)
        ops.append(f"q {module} 0 0 {height} {self._x(left + code.x)} {bottom} cm\n")
        position = 0
        for i, width in enumerate(code.bars):
            if i % 2 == 0:
                ops.append(f"{position} 0 {width} 1 re\n")
            position += width
        ops.append("f Q\n")

    def _picture(self, ops: list[str], picture: Picture, left: float, top: float) -> None:
        name, aspect = self._image(picture.path)
        width = min(picture.width, picture.height * aspect)
        height = width / aspect
        x = left + picture.x + (picture.width - width) / 2
        y = top + picture.y + (picture.height - height) / 2
        ops.append(f"q {number(width * PT_PER_MM)} 0 0 {number(height * PT_PER_MM)} "
                   f"{self._x(x)} {self._y(y + height)} cm /{name} Do Q\n")

    def _image(self, path: Path) -> tuple[str, float]:
        """Embed an image the first time a page uses it; later pages refer to the same one."""
        if path not in self._images:
            from PIL import Image, UnidentifiedImageError  # only templates with logos need it

            try:
                with Image.open(path) as opened:
                    image = opened.convert("RGBA")
            except (OSError, UnidentifiedImageError) as exc:
                raise TemplateError(path, "image", f"cannot be read as an image: {exc}") from exc
            # Labels are white: flatten any transparency onto white.
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
            gray = image.convert("L")
            if gray.convert("RGBA").tobytes() == image.tobytes():
                image, is_gray = gray, True  # a black-and-white logo: a third of the bytes
            else:
                image, is_gray = image.convert("RGB"), False
            name = self._pdf.image(image.width, image.height, is_gray, image.tobytes())
            self._images[path] = (name, image.width / image.height)
        return self._images[path]
