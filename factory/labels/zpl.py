"""The ZPL II edge: laid-out labels as ZPL formats for Zebra printers, one `^XA ... ^XZ` each.

The same layout as the PDF (`layout.py`), in mm, turned into dots at the printer's dpi; the
printer draws the symbols itself: the QR with `^BQ` (its own encoder, given the content and
error-correction level the layout chose), Code 128 with `^BC`, text in its scalable font 0
(`^A0`) aligned in the element's box with `^FB`. A few hundred bytes a label instead of a PDF,
and nothing for the printer to rasterise. Images are not drawn: `check` refuses a template
with one when the station starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from factory.labels.elements import Image
from factory.labels.errors import LabelError, TemplateError
from factory.labels.layout import Barcode, Label, LabelData, Picture, QrSymbol, TextRun, layout
from factory.labels.render import output_stream
from factory.labels.template import Template

MAX_MAGNIFICATION = 10  # ^BQ's largest module, in dots
_ALIGN = {"left": "L", "center": "C", "right": "R"}
# ^FH hex-escapes field data: ^ and ~ would start a command, _ is the escape itself.
_ESCAPES = str.maketrans({"^": "_5E", "~": "_7E", "_": "_5F"})


def dots(mm: float, dpi: int) -> int:
    """A length in whole printer dots."""
    return round(mm * dpi / 25.4)


def check(template: Template, dpi: int, sample: Label | None = None) -> None:
    """TemplateError unless every element of `template` can be drawn in ZPL at `dpi` (and, with
    a laid-out `sample` label, its symbols' modules are whole dots the printer can make)."""
    for element in template.elements:
        if isinstance(element, Image):
            raise TemplateError(template.source, element.name, (
                "an image cannot be printed as native ZPL (the printer draws text, QR and "
                "Code 128 itself): remove it from the template or print PDF "
                "([printer] language = \"pdf\")"))
    for item in sample.items if sample is not None else ():
        if isinstance(item, QrSymbol):
            _magnification(template, item, dpi)
        elif isinstance(item, Barcode):
            _bar_module(template, item, dpi)


def render_zpl(template: Template, labels: Iterable[LabelData], out: IO[bytes] | str | Path,
               dpi: int) -> int:
    """One ZPL format per label into one file (or stream); returns the number of labels."""
    check(template, dpi)
    count = 0
    with output_stream(out) as stream:
        for data in labels:
            stream.write(label_zpl(template, layout(template, data, modules=False), dpi))
            count += 1
        if not count:
            raise LabelError(f"{template.name}: no labels to render")
    return count


def label_zpl(template: Template, label: Label, dpi: int) -> bytes:
    """One laid-out label as a ZPL II format (UTF-8 field data, ^CI28)."""
    parts = [f"^XA^CI28^PW{dots(label.width, dpi)}^LL{dots(label.height, dpi)}^LH0,0\n"]
    for item in label.items:
        if isinstance(item, TextRun):
            parts.append(_text(item, dpi))
        elif isinstance(item, QrSymbol):
            parts.append(_qr(template, item, dpi))
        elif isinstance(item, Barcode):
            parts.append(_barcode(template, item, dpi))
        else:
            _refuse_picture(template, item)
    parts.append("^XZ\n")
    return "".join(parts).encode()


def _field(data: str) -> str:
    return f"^FH_^FD{data.translate(_ESCAPES)}^FS\n"


def _text(run: TextRun, dpi: int) -> str:
    # Font 0's cell height is the em: the same point size as the PDF's font.
    height = max(10, dots(run.size * 25.4 / 72, dpi))
    return (f"^FO{dots(run.left, dpi)},{dots(run.top, dpi)}^A0N,{height},{height}"
            f"^FB{dots(run.width, dpi)},1,0,{_ALIGN[run.align]},0" + _field(run.text))


def _qr(template: Template, qr: QrSymbol, dpi: int) -> str:
    # ^FD <level><mode>,<data>: A = the printer picks numeric/alphanumeric/byte segments.
    # Printers draw an ^FO-placed QR lower by the barcode height ^BY last set, less one dot
    # (it persists between formats): pinned to 1, the symbol starts at the ^FO.
    magnification = _magnification(template, qr, dpi)
    return (f"^BY1,3,1^FO{dots(qr.x, dpi)},{dots(qr.y, dpi)}^BQN,2,{magnification}"
            + _field(f"{qr.level}A,{qr.content}"))


def _barcode(template: Template, code: Barcode, dpi: int) -> str:
    height = dots(code.height, dpi)
    # ^BC mode A: the printer picks the code sets (no '>' invocation codes in the data).
    return (f"^FO{dots(code.x, dpi)},{dots(code.y, dpi)}^BY{_bar_module(template, code, dpi)}"
            f",3,{height}^BCN,{height},N,N,N,A" + _field(code.content))


def _magnification(template: Template, qr: QrSymbol, dpi: int) -> int:
    module = math.floor(qr.module * dpi / 25.4 + 1e-6)
    if not 1 <= module <= MAX_MAGNIFICATION:
        raise TemplateError(template.source, "qr", (
            f"a QR module of {qr.module:.3f} mm is {qr.module * dpi / 25.4:.2f} dots at "
            f"{dpi} dpi; ZPL's ^BQ draws 1 to {MAX_MAGNIFICATION}: resize the QR or set the "
            "template's [page] dpi to the printer's"))
    return module


def _bar_module(template: Template, code: Barcode, dpi: int) -> int:
    module = math.floor(code.module * dpi / 25.4 + 1e-6)
    if not 1 <= module <= MAX_MAGNIFICATION:
        raise TemplateError(template.source, "code128", (
            f"a bar module of {code.module:.3f} mm is {code.module * dpi / 25.4:.2f} dots at "
            f"{dpi} dpi; ZPL's ^BY takes 1 to {MAX_MAGNIFICATION}: resize the barcode"))
    return module


def _refuse_picture(template: Template, picture: Picture) -> None:
    raise TemplateError(template.source, str(picture.path.name),
                        "an image cannot be printed as native ZPL")
