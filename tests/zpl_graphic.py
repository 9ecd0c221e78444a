"""Decoding the bitmap a ZPL driver sends back into an image, for tests.

CUPS's Zebra ZPL driver (`rastertolabel`, Debian's `drv:///sample.drv/zebra.ppd`) sends each
page as one stored graphic, `~DGR:CUPS.GRF,<total bytes>,<bytes per row>,<data>`, in ZPL's
"alternative data compression scheme" (ASCII hex with run lengths), then prints it with
`^XGR:CUPS.GRF` in a `^XA ... ^XZ` format. The bitmap is the page as the PDF shows it (the
format's `^POI` is the driver's choice of which end of the label leaves the printer first).
`zebrafy` reads only `^GF` graphics, and zplkit refuses the driver's `^MN`: hence this small
decoder, tested on its own in tests/test_zebra_driver.py.

The compression (ZPL II manual, ~DG): hex digits, 2 per byte, row after row; a run-length
prefix before a digit repeats it: G..Y = 1..19, g..y = 20..380 (steps of 20), z = 400, summed;
`,` fills the rest of the row with 0, `!` with 1 (F); `:` repeats the previous row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image

_HEADER = re.compile(rb"~DG([^,]+),(\d+),(\d+),")


@dataclass(frozen=True)
class Graphic:
    name: str
    bytes_per_row: int
    rows: list[bytes]

    def image(self) -> Image.Image:
        """Black ink on white."""
        width, height = self.bytes_per_row * 8, len(self.rows)
        # PIL "1" mode packs 8 pixels a byte with 1 = white: a set dot is black ink.
        raw = bytes(b ^ 0xFF for row in self.rows for b in row)
        return Image.frombytes("1", (width, height), raw)


def _count(char: int) -> int:
    if ord("G") <= char <= ord("Y"):
        return char - ord("F")
    if ord("g") <= char <= ord("y"):
        return (char - ord("f")) * 20
    if char == ord("z"):
        return 400
    return 0


def decode_rows(data: bytes, bytes_per_row: int, total: int) -> list[bytes]:
    """The rows of one ~DG graphic's compressed data, exactly `total` bytes."""
    digits = bytes_per_row * 2
    rows: list[bytes] = []
    row: list[str] = []
    repeat = 0

    def end_row(fill: str) -> None:
        row.extend(fill * (digits - len(row)))
        rows.append(bytes.fromhex("".join(row)))
        row.clear()

    for char in data:
        if char in b" \r\n\t":
            continue
        if len(rows) * bytes_per_row >= total:
            raise ValueError(f"data goes on after the {total} bytes the header gives")
        if (n := _count(char)):
            repeat += n
        elif char == ord(","):
            end_row("0")
        elif char == ord("!"):
            end_row("F")
        elif char == ord(":"):
            if row:
                raise ValueError("':' (repeat the previous row) in the middle of a row")
            rows.append(rows[-1] if rows else bytes(bytes_per_row))
        elif chr(char) in "0123456789ABCDEFabcdef":
            row.extend(chr(char).upper() * max(repeat, 1))
            repeat = 0
            if len(row) > digits:
                raise ValueError(f"row {len(rows)} has {len(row)} hex digits, not {digits}")
            if len(row) == digits:
                end_row("0")
        else:
            raise ValueError(f"{chr(char)!r} is not in ZPL's compressed hex")
    if len(rows) * bytes_per_row != total:
        raise ValueError(f"{len(rows)} rows of {bytes_per_row} bytes, header says {total} bytes")
    return rows


def graphics(zpl: bytes) -> list[Graphic]:
    """Every ~DG graphic in a ZPL stream, decoded."""
    found = []
    for match in _HEADER.finditer(zpl):
        total, per_row = int(match[2]), int(match[3])
        end = re.compile(rb"[\^~]").search(zpl, match.end())
        data = zpl[match.end() : end.start() if end else len(zpl)]
        found.append(Graphic(match[1].decode(), per_row, decode_rows(data, per_row, total)))
    return found
