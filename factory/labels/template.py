"""Label templates: TOML files in ``labels/`` parsed into frozen dataclasses and checked when
loaded, so a label that falls off the page or a QR too small to scan never reaches a printer.

Lengths are in the page's ``unit`` (mm or in) in the file and in mm here; font sizes in points.
Positions are from the page's top-left corner, y downwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from factory.labels import geometry, placeholders, symbols
from factory.labels.elements import ALIGNS, Align, Code128, Element, Image, Page, Qr, Text
from factory.labels.errors import TemplateError
from factory.labels.metrics import FONTS
from factory.labels.reading import Fields, read_toml

MM_PER_UNIT = {"mm": 1.0, "in": 25.4}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


@dataclass(frozen=True)
class Template:
    source: Path
    page: Page
    elements: tuple[Element, ...]

    @property
    def name(self) -> str:
        return self.source.stem

    def with_qr_content(self, content: str) -> Template:
        """This template with every QR encoding `content` (a product's own format string);
        an empty `content` (the product sets none) keeps the template's."""
        if not content:
            return self
        elements = tuple(replace(e, content=content) if isinstance(e, Qr) else e
                         for e in self.elements)
        for element in elements:
            if isinstance(element, Qr):
                try:
                    placeholders.names_in(content)
                except ValueError as exc:
                    raise TemplateError(self.source, element.name, f"content: {exc}") from exc
                geometry.check_qr(self.source, self.page, element)
        return replace(self, elements=elements)


def load_template(path: str | Path) -> Template:
    """Read and check a label template file."""
    source = Path(path)
    root = Fields(source, "", read_toml(source))
    if "sheet" in root.data:
        raise root.error("is a sheet template ([sheet]): load it with load_sheet; a product's "
                         "label names a label template, such as the sheet's label")
    page_fields = Fields(source, "page", root.get("page", dict))
    unit = MM_PER_UNIT[page_fields.choice("unit", tuple(MM_PER_UNIT), "mm")]
    page_fields.unit = unit
    page = _page(page_fields)
    elements: list[Element] = []
    for kind, parse in (("text", _text), ("qr", _qr), ("code128", _code128), ("image", _image)):
        for i, table in enumerate(root.get(kind, list, [])):
            raw_name = table.get("name") if isinstance(table, dict) else None
            name = f"{kind}[{i}]" + (f" {raw_name!r}" if isinstance(raw_name, str) else "")
            fields = Fields(source, name, table, unit)
            fields.get("name", str, "")
            element = parse(fields)
            fields.finish()
            _check(source, page, element)
            elements.append(element)
    root.finish()
    if not elements:
        raise root.error("has no elements: add [[text]], [[qr]], [[code128]] or [[image]]")
    return Template(source=source, page=page, elements=tuple(elements))


def _page(fields: Fields) -> Page:
    width, height = fields.length("width"), fields.length("height")
    if not (5 <= width <= 1000 and 5 <= height <= 1000):
        raise fields.error("width, height: must be between 5 and 1000 mm")
    raw = fields.get("margin", (int, float, list), 0)
    values = raw if isinstance(raw, list) else [raw] * 4
    if len(values) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                   and v >= 0 for v in values):
        raise fields.error("margin: must be a length or [top, right, bottom, left], all >= 0")
    margins = cast(tuple[float, float, float, float], tuple(v * fields.unit for v in values))
    if margins[0] + margins[2] >= height or margins[1] + margins[3] >= width:
        raise fields.error("margin: leaves no room on the page")
    dpi = fields.get("dpi", int, 0) or None
    if dpi is not None and not 100 <= dpi <= 2400:
        raise fields.error(f"dpi: must be between 100 and 2400, got {dpi}")
    fields.finish()
    return Page(width, height, margins, dpi)


def _check(source: Path, page: Page, element: Element) -> None:
    if isinstance(element, Text):
        geometry.check_text(source, page, element)
    elif isinstance(element, Qr):
        geometry.check_qr(source, page, element)
    elif isinstance(element, Code128):
        geometry.check_code128(source, page, element)
    else:
        geometry.check_image(source, page, element)


def _content(fields: Fields, key: str, default: Any) -> str:
    value = cast(str, fields.get(key, str, default))
    try:
        placeholders.names_in(value)
    except ValueError as exc:
        raise fields.error(f"{key}: {exc}") from exc
    return value


def _text(fields: Fields) -> Text:
    text = _content(fields, "text", ...)
    size = fields.number("size", low=1)
    min_size = fields.number("min_size", size, low=1)
    if min_size > size:
        raise fields.error(f"min_size: {min_size:g} pt is larger than size {size:g} pt")
    return Text(name=fields.element, text=text, x=fields.length("x"), y=fields.length("y"),
                width=fields.length("width"), size=size, min_size=min_size,
                font=fields.choice("font", tuple(FONTS), "Helvetica"),
                align=cast(Align, fields.choice("align", ALIGNS, "left")))


def _qr(fields: Fields) -> Qr:
    quiet = fields.get("quiet_zone", int, 4)
    if not 2 <= quiet <= 16:
        raise fields.error(f"quiet_zone: must be 2 to 16 modules (4 is the standard), got {quiet}")
    return Qr(name=fields.element, content=_content(fields, "content", "{uci}"),
              x=fields.length("x"), y=fields.length("y"), size=fields.length("size"),
              level=cast(symbols.Level, fields.choice("level", symbols.LEVELS, "M")),
              quiet_zone=quiet)


def _code128(fields: Fields) -> Code128:
    return Code128(name=fields.element, content=_content(fields, "content", "{uci}"),
                   x=fields.length("x"), y=fields.length("y"),
                   width=fields.length("width"), height=fields.length("height"))


def _image(fields: Fields) -> Image:
    path = fields.source.parent / fields.get("path", str)
    try:
        with path.open("rb") as image:
            head = image.read(8)
    except OSError as exc:
        raise fields.error(f"path: {path} cannot be read: {exc.strerror}") from exc
    if not head.startswith(_IMAGE_MAGIC):
        raise fields.error(f"path: {path} is not a PNG or JPEG file")
    return Image(name=fields.element, path=path.resolve(), x=fields.length("x"),
                 y=fields.length("y"), width=fields.length("width"),
                 height=fields.length("height"))
