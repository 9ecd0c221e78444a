"""Making a unit's label in the running station: rendered from its product's template into
the keep folder (0600: it carries the claim ID and perhaps the claim secret) and journaled
`labelled` {pdf, sha256, copy}; with a printer configured, the print queue
(`factory.labels.print_queue`) then owes it. A printer that speaks ZPL (`[printer] language =
"zpl"`) gets `<uci>-<copy>.zpl`, kept beside the PDF (the copy people open) and journaled as
{zpl, zpl_sha256}. A reprint is another `labelled` with the next copy number and the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from factory import failpoints
from factory.config import Product, StationConfig
from factory.files import replacing
from factory.journal.interface import Journal
from factory.labels.errors import LabelError
from factory.labels.layout import LabelData
from factory.labels.products import ProductLabels
from factory.labels.render import render_labels
from factory.labels.template import Template
from factory.labels.zpl import render_zpl
from factory.units.driver import UnitDriver
from factory.units.errors import UnitError
from factory.units.pipeline import Ledger, UnitRun

log = logging.getLogger("factory.labels")


def _no_queue() -> None:
    """Nothing to wake: a station started later finds the label owed in the journal."""


class LabelMaker:
    """Renders, keeps and journals the labels of one station; `wake` tells the print queue a
    label is owed (the CLI has no queue to tell)."""

    def __init__(self, config: StationConfig, journal: Journal, products: ProductLabels,
                 wake: Callable[[], None] = _no_queue) -> None:
        self._config, self._journal, self._products = config, journal, products
        self._wake = wake

    @property
    def printing(self) -> bool:
        """Whether labels go to a printer (else the PDFs are only kept)."""
        return self._config.printer.enabled

    async def make(self, uci: str, product: Product, actor: str,
                   reason: str | None = None) -> Path:
        """Render the unit's label, keep the PDF, journal `labelled`; the queue prints it."""
        unit = await self._journal.unit(uci)
        copy = 1 + sum(1 for e in unit.events if e.kind == "labelled")
        keep = self._config.printer.keep
        pdf = keep / f"{uci}-{copy}.pdf"
        data = self._products.data(product, uci)
        template = self._products.template(product)
        digest = await asyncio.to_thread(_render, template, data, pdf)
        event: dict[str, object] = {"pdf": str(pdf), "sha256": digest, "copy": copy,
                                    "template": product.label}
        if self._config.printer.language == "zpl":
            zpl = pdf.with_suffix(".zpl")
            event["zpl"] = str(zpl)
            event["zpl_sha256"] = await asyncio.to_thread(
                _render_zpl, template, data, zpl, self._config.printer.dpi)
        failpoints.hit("label.rendered")
        if reason is not None:
            event["reason"] = reason
        if self.printing:  # the printer owes it (journal: labels_owed)
            event["printer"] = self._config.printer.name
        await self._journal.record(uci, "labelled", actor, event, state="labelled")
        self._wake()
        return pdf

    async def recover(self) -> int:
        """Make the labels of units that verified but were never labelled (the station
        stopped in between, and the unit may never be plugged in again); at start, before
        the fixtures. Returns how many."""
        products = {p.id: p for p in self._config.products if p.label}
        made = 0
        for uci, product in await self._journal.unlabelled(sorted(products)):
            try:
                await self.make(uci, products[product], "station:recovery")
                made += 1
            except (LabelError, OSError) as exc:
                log.error("the label of %s could not be made: %s", uci, exc)
        if made:
            log.info("made %d labels that a stop had left unmade", made)
        return made


class Label:
    """The pipeline step after `verified`: a label only for a unit whose file verified, so a
    label always matches its device."""

    name = "labelling"

    def __init__(self, maker: LabelMaker) -> None:
        self._maker = maker

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        if not run.product.label or run.uci is None:
            return
        if (await ledger.unit(run.uci)).last("labelled") is not None:
            return  # one label a unit, however often it is plugged in; reprints are asked for
        try:
            pdf = await self._maker.make(run.uci, run.product, run.actor)
        except (LabelError, OSError) as exc:
            raise LabelFailed(f"the label could not be made: {exc}") from exc
        where = "queued for the printer" if self._maker.printing else "kept (no printer)"
        run.log.append(f"label {pdf.name} {where}")


class LabelFailed(UnitError):
    """The unit is fine but its label could not be rendered or kept."""

    code = "label-failed"
    action = "check the product's label template and the label folder; plug the unit in again"


def _render(template: Template, data: LabelData, pdf: Path) -> str:
    """Write the label PDF (0600 in a 0700 folder: it carries the claim ID) and hash it."""
    with replacing(pdf) as out:
        render_labels(template, [data], out)
    return hashlib.sha256(pdf.read_bytes()).hexdigest()


def _render_zpl(template: Template, data: LabelData, path: Path, dpi: int) -> str:
    """Write the label as native ZPL (0600, as the PDF) and hash it."""
    with replacing(path) as out:
        render_zpl(template, [data], out, dpi)
    return hashlib.sha256(path.read_bytes()).hexdigest()
