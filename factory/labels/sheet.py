"""Sheet templates: a page (e.g. A4) with a grid of label cells for office printers, each cell
holding one label drawn from a label template.

    [sheet]
    label = "office-70x37.toml"   # relative to this file
    size = "A4"                   # or width = 210 and height = 297 (in `unit`)
    columns = 3
    rows = 8
    pitch = [70, 37]              # distance between cell origins, across and down
    offset = [0, 0.5]             # the first cell's top-left corner
    order = "rows"                # fill a row before the next ("columns": down first)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from factory.labels.geometry import EPS
from factory.labels.reading import Fields, read_toml
from factory.labels.template import MM_PER_UNIT, Template, load_template

Order = Literal["rows", "columns"]
PAPER_SIZES = {"A4": (210.0, 297.0), "A5": (148.0, 210.0), "Letter": (215.9, 279.4)}


@dataclass(frozen=True)
class Sheet:
    source: Path
    label: Template
    width: float  # mm
    height: float
    columns: int
    rows: int
    pitch: tuple[float, float]  # across, down
    offset: tuple[float, float]  # the first cell's top-left corner
    order: Order = "rows"

    @property
    def cells(self) -> int:
        return self.columns * self.rows

    def cell(self, index: int) -> tuple[float, float]:
        """Top-left corner (mm) of cell `index` (0-based, in fill order) on its page."""
        if self.order == "rows":
            row, column = divmod(index, self.columns)
        else:
            column, row = divmod(index, self.rows)
        return (self.offset[0] + column * self.pitch[0], self.offset[1] + row * self.pitch[1])


def load_sheet(path: str | Path) -> Sheet:
    """Read and check a sheet template and the label template it names."""
    source = Path(path)
    root = Fields(source, "", read_toml(source))
    fields = Fields(source, "sheet", root.get("sheet", dict))
    root.finish()
    fields.unit = MM_PER_UNIT[fields.choice("unit", tuple(MM_PER_UNIT), "mm")]
    label = load_template(source.parent / fields.get("label", str))
    size = fields.get("size", str, "")
    if size:
        if size not in PAPER_SIZES:
            raise fields.error(f"size: must be one of {', '.join(PAPER_SIZES)}, or give "
                               f"width and height; got {size!r}")
        width, height = PAPER_SIZES[size]
    else:
        width, height = fields.length("width"), fields.length("height")
    columns, rows = fields.get("columns", int), fields.get("rows", int)
    if not (1 <= columns <= 50 and 1 <= rows <= 100):
        raise fields.error("columns, rows: must be 1..50 and 1..100")
    pitch = _pair(fields, "pitch", None)
    offset = _pair(fields, "offset", (0.0, 0.0))
    order = cast(Order, fields.choice("order", ("rows", "columns"), "rows"))
    fields.finish()
    page = label.page
    if page.width > pitch[0] + EPS or page.height > pitch[1] + EPS:
        raise fields.error(f"pitch: cells {pitch[0]:g} x {pitch[1]:g} mm are smaller than the "
                           f"{page.width:g} x {page.height:g} mm label: labels would overlap")
    right = offset[0] + (columns - 1) * pitch[0] + page.width
    bottom = offset[1] + (rows - 1) * pitch[1] + page.height
    if offset[0] < -EPS or offset[1] < -EPS or right > width + EPS or bottom > height + EPS:
        raise fields.error(f"the {columns} x {rows} grid covers x {offset[0]:g}..{right:g} mm, "
                           f"y {offset[1]:g}..{bottom:g} mm; the page is {width:g} x "
                           f"{height:g} mm")
    return Sheet(source=source, label=label, width=width, height=height, columns=columns,
                 rows=rows, pitch=pitch, offset=offset, order=order)


def _pair(fields: Fields, key: str, default: tuple[float, float] | None) -> tuple[float, float]:
    value = fields.get(key, list, ... if default is None else list(default))
    if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                  for v in value):
        raise fields.error(f"{key}: must be [across, down], two lengths")
    return (value[0] * fields.unit, value[1] * fields.unit)
