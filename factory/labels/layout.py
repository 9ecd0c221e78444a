"""What a label shows and where: a template and one unit's data in, positioned items out.

Pure: no PDF, no files. Lengths in mm from the label's top-left corner, y downwards; the
renderer turns them into PDF points.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from factory import uci as ucis
from factory.config import Product
from factory.labels import geometry, placeholders, symbols
from factory.labels.elements import MM_PER_PT, Align, Code128, Image, Qr, Text
from factory.labels.errors import ContentError
from factory.labels.metrics import text_width
from factory.labels.template import Template


@dataclass(frozen=True)
class LabelData:
    """One unit's facts for its label."""

    uci: str  # canonical form, as issued
    product: str  # the product id
    name: str
    model: str = ""
    date: datetime.date | None = None
    claim_secret: str | None = None

    @classmethod
    def for_product(cls, product: Product, uci: str, *, date: datetime.date | None = None,
                    claim_secret: str | None = None) -> LabelData:
        """The label data of a unit of a configured product."""
        return cls(uci=uci, product=product.id, name=product.name, model=product.model,
                   date=date, claim_secret=claim_secret)


@dataclass(frozen=True)
class TextRun:
    x: float
    y: float  # the baseline
    text: str
    font: str
    size: float  # points
    top: float  # the element's box, which printer fonts (ZPL) align the text in themselves
    left: float
    width: float
    align: Align


@dataclass(frozen=True)
class QrSymbol:
    x: float  # top-left corner of the first module (the quiet zone is around it)
    y: float
    module: float
    matrix: symbols.QrMatrix | None  # None: laid out for a printer that draws it (ZPL)
    content: str  # what the symbol encodes, exactly
    level: symbols.Level
    size: int  # modules a side


@dataclass(frozen=True)
class Barcode:
    x: float  # left edge of the first bar
    y: float  # top of the bars
    module: float
    height: float
    bars: tuple[int, ...]  # widths in modules: bar, space, bar, …
    content: str


@dataclass(frozen=True)
class Picture:
    x: float
    y: float
    width: float  # the image fits inside this box, keeping its aspect ratio
    height: float
    path: Path


Item = TextRun | QrSymbol | Barcode | Picture


@dataclass(frozen=True)
class Label:
    uci: str
    width: float
    height: float
    items: tuple[Item, ...]


def layout(template: Template, data: LabelData, *, modules: bool = True) -> Label:
    """Place every element of `template` for the unit `data`; ContentError if it cannot fit.
    Without `modules`, QR symbols are placed but not encoded (a ZPL printer draws them)."""
    values = _values(template, data)
    items: list[Item] = []
    for element in template.elements:
        if isinstance(element, Text):
            items.append(_text(template, element, data, values))
        elif isinstance(element, Qr):
            items.append(_qr(template, element, data, values, modules))
        elif isinstance(element, Code128):
            items.append(_code128(template, element, data, values))
        else:
            items.append(_picture(element))
    page = template.page
    return Label(uci=data.uci, width=page.width, height=page.height, items=tuple(items))


def check_product(template: Template, product: Product, *,
                  claim_secret: str | None = None) -> Label:
    """Lay out a sample label of `product`, so a name or model that cannot fit the template
    stops the station at start-up instead of failing after a unit has been written."""
    sample = LabelData.for_product(product, ucis.encode(0), date=datetime.date(2000, 12, 31),
                                   claim_secret=claim_secret)
    return layout(template, sample)


def _values(template: Template, data: LabelData) -> dict[str, str | None]:
    try:
        canonical = ucis.parse(data.uci)
    except ucis.UciError as exc:
        raise ContentError(template.source, "", data.uci, str(exc)) from exc
    if canonical != data.uci:
        raise ContentError(template.source, "", data.uci,
                           f"give the canonical UCI ({canonical}), not another form")
    return {
        "uci": data.uci, "human": ucis.human(data.uci), "product": data.product,
        "name": data.name, "model": data.model,
        "date": data.date.isoformat() if data.date else None,
        "claim_secret": data.claim_secret,
    }


def _fill(template: Template, name: str, fmt: str, data: LabelData,
          values: dict[str, str | None], *, capped: bool) -> str:
    """`fmt` with the unit's values; `capped` holds each value to the length the template
    was checked for (QR and barcode sizes depend on it)."""
    for key in placeholders.names_in(fmt):
        value = values[key]
        if value is None:
            raise ContentError(template.source, name, data.uci,
                               f"{{{key}}} has no value: set LabelData.{key}")
        limit = len(placeholders.SAMPLES[key])
        if capped and len(value.encode()) > limit:
            raise ContentError(template.source, name, data.uci, (
                f"{{{key}}} is {len(value.encode())} bytes; the template's size was checked "
                f"for at most {limit}"))
    return fmt.format_map(values)


def _text(template: Template, text: Text, data: LabelData,
          values: dict[str, str | None]) -> TextRun:
    content = _fill(template, text.name, text.text, data, values, capped=False)
    if any(ch < " " for ch in content):
        raise ContentError(template.source, text.name, data.uci,
                           f"{content!r} has a control character; a label line is one line")
    try:
        width = text_width(content, text.font, text.size) * MM_PER_PT
    except UnicodeEncodeError as exc:
        raise ContentError(template.source, text.name, data.uci, (
            f"{content[exc.start]!r} in {content!r} is not in the WinAnsi character set of "
            "the PDF standard fonts")) from exc
    size = text.size
    if width > text.width:
        size = max(text.min_size, text.size * text.width / width)
        width = width * size / text.size
        if width > text.width + geometry.EPS:
            raise ContentError(template.source, text.name, data.uci, (
                f"{content!r} is {width:.1f} mm wide at {size:g} pt, the smallest size "
                f"allowed; the box is {text.width:.1f} mm"))
    offset = {"left": 0.0, "center": (text.width - width) / 2, "right": text.width - width}
    return TextRun(x=text.x + offset[text.align], y=geometry.baseline(text, size),
                   text=content, font=text.font, size=size, top=text.y, left=text.x,
                   width=text.width, align=text.align)


def _qr(template: Template, qr: Qr, data: LabelData, values: dict[str, str | None],
        modules: bool) -> QrSymbol:
    content = _fill(template, qr.name, qr.content, data, values, capped=True)
    try:
        matrix = symbols.qr_matrix(content, qr.level) if modules else None
        size = matrix.size if matrix else symbols.qr_size(content, qr.level)
    except symbols.SymbolError as exc:
        raise ContentError(template.source, qr.name, data.uci, str(exc)) from exc
    placed = geometry.place_qr(template.page, qr, size)
    if placed.module < geometry.MIN_MODULE_MM - geometry.EPS:
        raise ContentError(template.source, qr.name, data.uci, (
            f"{content!r} needs {size}x{size} modules: "
            f"{placed.module:.3f} mm each is too small to scan"))
    return QrSymbol(x=placed.x, y=placed.y, module=placed.module, matrix=matrix,
                    content=content, level=qr.level, size=size)


def _code128(template: Template, code: Code128, data: LabelData,
             values: dict[str, str | None]) -> Barcode:
    content = _fill(template, code.name, code.content, data, values, capped=True)
    try:
        bars = symbols.code128_bars(content)
    except symbols.SymbolError as exc:
        raise ContentError(template.source, code.name, data.uci, str(exc)) from exc
    placed = geometry.place_code128(template.page, code, sum(bars))
    if placed.module < geometry.MIN_MODULE_MM - geometry.EPS:
        raise ContentError(template.source, code.name, data.uci,
                           f"{content!r}: bars of {placed.module:.3f} mm are too thin to scan")
    return Barcode(x=placed.x, y=placed.y, module=placed.module, height=placed.height,
                   bars=bars, content=content)


def _picture(image: Image) -> Picture:
    return Picture(x=image.x, y=image.y, width=image.width, height=image.height,
                   path=image.path)
