"""What a label template is made of: the page and its elements, as frozen values (lengths in
mm, font sizes in points). `template.py` reads them from TOML; `geometry.py` places their ink."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.labels import symbols
from factory.labels.metrics import FONTS

MM_PER_PT = 25.4 / 72
Align = Literal["left", "center", "right"]
ALIGNS: tuple[Align, ...] = ("left", "center", "right")


@dataclass(frozen=True)
class Page:
    width: float
    height: float
    margins: tuple[float, float, float, float]  # top, right, bottom, left
    dpi: int | None = None  # when set, QR modules and bars snap to whole printer dots


@dataclass(frozen=True)
class Text:
    name: str  # where it is in its file, e.g. "text[0] 'claim'"
    text: str  # a format string with {placeholders}
    x: float
    y: float  # top of the line
    width: float  # the box the text is aligned in
    size: float  # points
    font: str
    align: Align = "left"
    min_size: float = 0.0  # shrink a long text down to this size before refusing it

    @property
    def height(self) -> float:
        metrics = FONTS[self.font]
        return (metrics.ascent - metrics.descent) / 1000 * self.size * MM_PER_PT


@dataclass(frozen=True)
class Qr:
    name: str
    content: str  # a format string, e.g. "https://claim.example.com/c/{uci}"
    x: float
    y: float
    size: float  # the square including the quiet zone
    level: symbols.Level = "M"
    quiet_zone: int = 4  # modules


@dataclass(frozen=True)
class Code128:
    name: str
    content: str
    x: float
    y: float
    width: float  # including a quiet zone of CODE128_QUIET modules each side
    height: float


@dataclass(frozen=True)
class Image:
    name: str
    path: Path  # absolute; written relative to the template file
    x: float
    y: float
    width: float  # the image is fitted into this box, keeping its aspect ratio
    height: float


Element = Text | Qr | Code128 | Image
