"""QR and Code 128 symbols as plain module data, encoded by zxing-cpp (its zint-based writer).

zxing-cpp encodes a QR code in ~0.1 ms, 25-30x faster than segno or qrcode (both pure Python;
the mask search alone costs them ~2.5 ms per label), and it splits content into optimal
numeric / alphanumeric / byte segments, so a claim URL fits a smaller version.
``scripts/bench_labels.py`` measures all three.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from typing import Any, Literal, cast

import zxingcpp

Level = Literal["L", "M", "Q", "H"]
LEVELS: tuple[Level, ...] = ("L", "M", "Q", "H")
# zxing-cpp images are 0 for dark, 255 for light; we keep 1 for dark.
_DARK = bytes.maketrans(b"\x00\xff", b"\x01\x00")
_RUN = re.compile(b"\x01+")


class SymbolError(ValueError):
    """Content that cannot be encoded (too long for any QR version, not Code 128 text)."""


@dataclass(frozen=True)
class QrMatrix:
    """A QR symbol without its quiet zone: `rows[r][c]` is 1 for a dark module."""

    rows: tuple[bytes, ...]
    level: Level

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def version(self) -> int:
        return (self.size - 17) // 4


def qr_matrix(content: str, level: Level) -> QrMatrix:
    """Encode `content` exactly (UTF-8 in byte segments where needed) at error level `level`."""
    try:
        symbol = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.QRCode, ec_level=level)
    except ValueError as exc:
        raise SymbolError(f"cannot be a QR code at level {level}: {exc}") from exc
    image = _pixels(symbol)
    height, width = image.shape or (0, 0)
    pixels = image.tobytes().translate(_DARK)
    rows = tuple(pixels[r * width : (r + 1) * width] for r in range(height))
    return QrMatrix(rows, level)


# QR's alphanumeric mode holds these; digits alone go in the cheaper numeric mode.
_ALPHANUMERIC_ONLY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_CHEAPEST = str.maketrans(dict.fromkeys(string.digits + _ALPHANUMERIC_ONLY, "0"))
_DEAREST = str.maketrans(dict.fromkeys(string.digits + _ALPHANUMERIC_ONLY, "A"))


def qr_size(content: str, level: Level) -> int:
    """`qr_matrix(content, level).size`, mostly without encoding: the content with every
    alphanumeric character made "0" costs no more bits (any segmentation of the content still
    fits it), made "A" no fewer; when both give one size, so does the content. A claim URL's
    two are the same strings for every UCI, so they are encoded once."""
    low = _size(content.translate(_CHEAPEST), level)
    high = _size(content.translate(_DEAREST), level)
    return low if low == high else qr_matrix(content, level).size


@functools.lru_cache(maxsize=1024)
def _size(content: str, level: Level) -> int:
    return qr_matrix(content, level).size


def code128_bars(content: str) -> tuple[int, ...]:
    """Widths in modules of bar, space, bar, … of a Code 128 symbol (no quiet zones).

    Only printable ASCII: other characters need FNC4 or control shifts that scanners treat
    differently, which is how labels end up with characters missing.
    """
    if not content or not all(" " <= ch <= "~" for ch in content):
        raise SymbolError("Code 128 content must be printable ASCII and not empty")
    symbol = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.Code128)
    image = _pixels(symbol)
    width = (image.shape or (0, 0))[1]
    row = image.tobytes()[:width].translate(_DARK)
    widths: list[int] = []
    start = 0
    for match in _RUN.finditer(row):
        if widths:
            widths.append(match.start() - start)  # the space before this bar
        widths.append(match.end() - match.start())
        start = match.end()
    return tuple(widths)


def _pixels(symbol: zxingcpp.Barcode) -> memoryview:
    # The stubs do not declare the buffer protocol that zxingcpp.Image implements.
    return memoryview(cast(Any, symbol.to_image(scale=1, add_quiet_zones=False)))


def dark_runs(row: bytes) -> list[tuple[int, int]]:
    """(start, length) of each horizontal run of dark modules in one matrix row."""
    return [(m.start(), m.end() - m.start()) for m in _RUN.finditer(row)]
