"""Where an element's ink goes for a given content. The template checks run it on the worst-case
content when a template is loaded and layout runs it on each unit's data, so both agree.

All lengths in mm from the page's top-left corner, y downwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from factory.labels import placeholders, symbols
from factory.labels.elements import MM_PER_PT, Code128, Image, Page, Qr, Text
from factory.labels.errors import TemplateError
from factory.labels.metrics import FONTS, text_width

# Two dots of a 203 dpi thermal head: smaller QR modules or bars do not print reliably.
MIN_MODULE_MM = 0.25
CODE128_QUIET = 10  # modules of quiet zone each side, as the standard asks
EPS = 1e-6


@dataclass(frozen=True)
class Placed:
    """The dark part of a symbol: its top-left corner, module size and extent."""

    x: float
    y: float
    module: float
    width: float
    height: float


def module_size(page: Page, length: float, modules: int) -> float:
    """The module when `modules` modules share `length` mm, snapped down to whole dots."""
    size = length / modules
    if page.dpi:
        dot = 25.4 / page.dpi
        size = math.floor(size / dot + EPS) * dot
    return size


def place_qr(page: Page, qr: Qr, modules: int) -> Placed:
    """A `modules`-wide QR symbol centred in the element's square, quiet zone included."""
    module = module_size(page, qr.size, modules + 2 * qr.quiet_zone)
    side = modules * module
    return Placed(qr.x + (qr.size - side) / 2, qr.y + (qr.size - side) / 2, module, side, side)


def place_code128(page: Page, code: Code128, modules: int) -> Placed:
    """A `modules`-wide Code 128 centred in the element's box, quiet zones included."""
    module = module_size(page, code.width, modules + 2 * CODE128_QUIET)
    width = modules * module
    return Placed(code.x + (code.width - width) / 2, code.y, module, width, code.height)


def baseline(text: Text, size: float) -> float:
    """The baseline of a line whose top stays at the element's y, at font size `size`."""
    return text.y + FONTS[text.font].ascent / 1000 * size * MM_PER_PT


def check_text(source: Path, page: Page, text: Text) -> None:
    """A text box inside the margins whose widest fixed-length content fits at min_size."""
    _inside(source, page, text.name, text.x, text.y, text.width, text.height)
    sample = placeholders.widest_fixed(text.text, text.font)
    try:
        width = text_width(sample, text.font, text.min_size) * MM_PER_PT
    except UnicodeEncodeError as exc:
        raise TemplateError(source, text.name, f"text: {sample[exc.start]!r} is not in the "
                            "WinAnsi character set of the PDF standard fonts") from exc
    if any(ch < " " for ch in sample):
        raise TemplateError(source, text.name, "text: must be one line, no control characters")
    if width > text.width + EPS:
        raise TemplateError(source, text.name, f"text: {sample!r} (its widest form) is "
                            f"{width:.1f} mm wide at {text.min_size:g} pt; the box is "
                            f"{text.width:.1f} mm: widen the box or lower size/min_size")


def check_qr(source: Path, page: Page, qr: Qr) -> None:
    """The QR at its longest content: modules big enough, symbol inside the margins."""
    worst = placeholders.worst_case(qr.content)
    try:
        matrix = symbols.qr_matrix(worst, qr.level)
    except symbols.SymbolError as exc:
        raise TemplateError(source, qr.name, f"content: at its longest ({len(worst)} "
                            f"characters) {exc}") from exc
    total = matrix.size + 2 * qr.quiet_zone
    placed = place_qr(page, qr, matrix.size)
    if placed.module < MIN_MODULE_MM - EPS:
        dot = 25.4 / page.dpi if page.dpi else 0.0
        need = math.ceil(MIN_MODULE_MM / dot - EPS) * dot if dot else MIN_MODULE_MM
        raise TemplateError(source, qr.name, (
            f"size: a module would be {placed.module:.3f} mm, below the {MIN_MODULE_MM} mm "
            f"a 203 dpi printer can print: the longest content ({len(worst)} characters) "
            f"needs version {matrix.version} ({matrix.size}x{matrix.size} modules) at level "
            f"{qr.level}, plus {qr.quiet_zone} quiet modules each side; make size at least "
            f"{need * total:.2f} mm, or use a lower level or a shorter content"))
    _inside(source, page, qr.name, placed.x, placed.y, placed.width, placed.height)
    _on_page(source, page, qr.name, qr.x, qr.y, qr.size, qr.size, "with its quiet zone")


def check_code128(source: Path, page: Page, code: Code128) -> None:
    """The barcode at its longest content: bars wide enough, inside the margins."""
    worst = placeholders.worst_case(code.content)
    try:
        modules = sum(symbols.code128_bars(worst))
    except symbols.SymbolError as exc:
        raise TemplateError(source, code.name, f"content: {exc}") from exc
    placed = place_code128(page, code, modules)
    if placed.module < MIN_MODULE_MM - EPS:
        need = MIN_MODULE_MM * (modules + 2 * CODE128_QUIET)
        raise TemplateError(source, code.name, (
            f"width: a bar module would be {placed.module:.3f} mm, below {MIN_MODULE_MM} mm: "
            f"the longest content ({len(worst)} characters) is {modules} modules plus "
            f"{CODE128_QUIET} quiet modules each side; make width at least {need:.1f} mm"))
    _inside(source, page, code.name, placed.x, placed.y, placed.width, placed.height)
    _on_page(source, page, code.name, code.x, code.y, code.width, code.height,
             "with its quiet zones")


def check_image(source: Path, page: Page, image: Image) -> None:
    _inside(source, page, image.name, image.x, image.y, image.width, image.height)


def _inside(source: Path, page: Page, name: str, x: float, y: float, w: float, h: float) -> None:
    if w <= 0 or h <= 0:
        raise TemplateError(source, name, "has no width or height")
    top, right, bottom, left = page.margins
    if not (x >= left - EPS and y >= top - EPS and x + w <= page.width - right + EPS
            and y + h <= page.height - bottom + EPS):
        raise TemplateError(source, name, (
            f"falls off the label: it covers x {x:.2f}..{x + w:.2f} mm, y {y:.2f}..{y + h:.2f} "
            f"mm; the printable area (page minus margins) is x {left:.2f}.."
            f"{page.width - right:.2f} mm, y {top:.2f}..{page.height - bottom:.2f} mm"))


def _on_page(source: Path, page: Page, name: str, x: float, y: float, w: float, h: float,
             what: str) -> None:
    if not (x >= -EPS and y >= -EPS and x + w <= page.width + EPS
            and y + h <= page.height + EPS):
        raise TemplateError(source, name, (
            f"falls off the page {what}: it covers x {x:.2f}..{x + w:.2f} mm, y {y:.2f}.."
            f"{y + h:.2f} mm on a {page.width:g} x {page.height:g} mm page"))
