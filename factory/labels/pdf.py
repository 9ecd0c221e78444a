"""A PDF file written object by object as pages arrive, so a run of 10,000 labels holds one
page in memory, not the whole document.

reportlab's canvas cannot do this: it keeps every page until ``save()`` and then builds the
whole file in memory. Labels need very little of PDF (standard fonts, filled rectangles, an
image XObject), so this writer covers just that. Only the object offsets (8 bytes each) are
kept until the cross-reference table is written at the end.
"""

from __future__ import annotations

import zlib
from array import array
from typing import IO

# Catalog, page tree and the one resource dictionary all pages share are numbered first and
# written last, when the fonts and images they list are known.
_CATALOG, _PAGES, _RESOURCES = 1, 2, 3
_HEADER = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


def number(value: float) -> str:
    """A PDF number: at most three decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def string(text: str) -> bytes:
    """A PDF literal string in WinAnsi (cp1252), the standard fonts' encoding."""
    raw = text.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


class PdfWriter:
    """Writes pages to `out` as they are added; call `close()` once to finish the file."""

    def __init__(self, out: IO[bytes], *, title: str = "") -> None:
        self._out = out
        self._position = 0
        self._offsets = array("Q", [0, 0, 0])  # offset of object n at index n - 1
        self._pages = array("Q")  # page object numbers, in order
        self._fonts: dict[str, tuple[str, int]] = {}  # base font -> (resource name, object)
        self._images: dict[str, int] = {}  # resource name -> object
        self._title = title
        self._write(_HEADER)

    @property
    def page_count(self) -> int:
        return len(self._pages)

    def font(self, base_font: str) -> str:
        """The resource name (F1, F2, …) of one of the 14 standard fonts."""
        if base_font not in self._fonts:
            self._fonts[base_font] = (f"F{len(self._fonts) + 1}", self._reserve())
        return self._fonts[base_font][0]

    def image(self, width: int, height: int, gray: bool, pixels: bytes) -> str:
        """Embed raw 8-bit pixels (gray or RGB) once; returns the name pages draw it by."""
        name = f"Im{len(self._images) + 1}"
        colors = b"/DeviceGray" if gray else b"/DeviceRGB"
        self._images[name] = self._stream(
            b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s "
            b"/BitsPerComponent 8" % (width, height, colors), pixels)
        return name

    def add_page(self, width: float, height: float, content: bytes) -> None:
        """One page of `width` x `height` points drawn by the content stream `content`."""
        contents = self._stream(b"", content)
        page = self._reserve()
        self._object(page, b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %s %s] "
                           b"/Resources %d 0 R /Contents %d 0 R >>"
                     % (_PAGES, number(width).encode(), number(height).encode(),
                        _RESOURCES, contents))
        self._pages.append(page)

    def close(self) -> None:
        """Write the shared objects, the cross-reference table and the trailer."""
        fonts = b"".join(b"/%s %d 0 R " % (name.encode(), obj)
                         for name, obj in self._fonts.values())
        for base, (_, obj) in self._fonts.items():
            self._object(obj, b"<< /Type /Font /Subtype /Type1 /BaseFont /%s "
                              b"/Encoding /WinAnsiEncoding >>" % base.encode())
        images = b"".join(b"/%s %d 0 R " % (name.encode(), obj)
                          for name, obj in self._images.items())
        self._object(_RESOURCES, b"<< /ProcSet [/PDF /Text /ImageB /ImageC] /Font << %s>> "
                                 b"/XObject << %s>> >>" % (fonts, images))
        # The page tree lists every page: written in chunks, never as one big bytes object.
        self._offsets[_PAGES - 1] = self._position
        self._write(b"%d 0 obj\n<< /Type /Pages /Count %d /Kids [" % (_PAGES, len(self._pages)))
        for start in range(0, len(self._pages), 1000):
            chunk = self._pages[start : start + 1000]
            self._write(b"".join(b"%d 0 R " % page for page in chunk))
        self._write(b"] >>\nendobj\n")
        self._object(_CATALOG, b"<< /Type /Catalog /Pages %d 0 R >>" % _PAGES)
        info = self._reserve()
        self._object(info, b"<< /Producer (factory station) /Title %s >>" % string(self._title))
        xref = self._position
        self._write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(self._offsets) + 1))
        for start in range(0, len(self._offsets), 1000):
            chunk = self._offsets[start : start + 1000]
            self._write(b"".join(b"%010d 00000 n \n" % offset for offset in chunk))
        self._write(b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                    % (len(self._offsets) + 1, _CATALOG, info, xref))

    def _reserve(self) -> int:
        self._offsets.append(0)
        return len(self._offsets)

    def _object(self, obj: int, body: bytes) -> None:
        self._offsets[obj - 1] = self._position
        self._write(b"%d 0 obj\n%s\nendobj\n" % (obj, body))

    def _stream(self, entries: bytes, data: bytes) -> int:
        packed = zlib.compress(data, 6)
        obj = self._reserve()
        self._object(obj, b"<< %s /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
                     % (entries, len(packed), packed))
        return obj

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._position += len(data)
