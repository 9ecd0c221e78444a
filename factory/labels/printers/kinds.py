"""Building the configured label printer: the one place a printer language or transport
registers (its `[printer] kind` and a builder taking the config's printer settings)."""

from __future__ import annotations

from collections.abc import Callable

from factory.config import Printer
from factory.labels.printers.cups.printer import CupsPrinter
from factory.labels.printers.interface import LabelPrinter
from factory.labels.printers.socket.printer import SocketPrinter

Builder = Callable[[Printer], LabelPrinter]

PRINTERS: dict[str, Builder] = {"cups": CupsPrinter, "socket": SocketPrinter}


def label_printer(settings: Printer) -> LabelPrinter | None:
    """The configured printer, or None when labels are only kept as PDFs."""
    if not settings.enabled:
        return None
    return PRINTERS[settings.kind](settings)
