"""Labels in the running station: a verified unit's label is rendered into the keep folder,
journaled (`labelled`), and printed by a queue worker that outlives a stopped printer and a
restarted station without printing a label twice.

A label's life in the journal: `labelled` {pdf, sha256, copy} (the printer owes it: the
journal's `labels_owed`) → `print_submitting` {title} → `print_submitted` {job} → `printed`
{job} (state printed). A reprint is another `labelled` with the next copy number and the
reason. Each CUPS job is titled "label <UCI> <copy>", so after a crash between `lp` and the
journal (`print_submitting` without `print_submitted`) the worker finds the job it already
submitted instead of printing the label again.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
from pathlib import Path

from factory import failpoints
from factory.claim_secret import ClaimSecrets
from factory.config import Product, StationConfig
from factory.files import replacing
from factory.journal.interface import Journal
from factory.journal.records import Event
from factory.labels import placeholders
from factory.labels.errors import LabelError, TemplateError
from factory.labels.layout import LabelData, check_product
from factory.labels.printer import (
    PrinterUnavailable,
    PrintRejected,
    find_jobs,
    submit,
    wait_printed,
)
from factory.labels.render import render_labels
from factory.labels.template import Template, load_template
from factory.units.driver import UnitDriver
from factory.units.errors import UnitError
from factory.units.pipeline import Ledger, UnitRun

log = logging.getLogger("factory.labels")
PRINT_TIMEOUT = 60.0  # seconds a job may take before the printer counts as unavailable
RETRY_MAX = 30.0  # seconds between tries while the printer is unavailable
CLOCK_SLACK = 120.0  # seconds the CUPS server's clock may be behind the station's


class Labels:
    """Renders, journals and prints the labels of one station."""

    def __init__(self, config: StationConfig, journal: Journal,
                 secrets: ClaimSecrets | None = None) -> None:
        self._config, self._journal, self._secrets = config, journal, secrets
        self._templates: dict[str, Template] = {}
        self._wakeup = asyncio.Event()
        self.printer_state = "idle" if config.printer.enabled else "none"
        self.printer_reason = ""

    @property
    def printing(self) -> bool:
        """Whether labels go to a CUPS queue (else the PDFs are only kept)."""
        return self._config.printer.enabled

    def template(self, product: Product) -> Template:
        """The product's template with the product's QR content (loaded once)."""
        if product.id not in self._templates:
            path = self._config.labels_dir / f"{product.label}.toml"
            self._templates[product.id] = load_template(path).with_qr_content(product.qr)
        return self._templates[product.id]

    @staticmethod
    def check_config(config: StationConfig) -> None:
        """`check` without a journal (`factory config check`)."""
        Labels(config, None).check()  # type: ignore[arg-type]  # check never journals

    def check(self) -> None:
        """Load every product's template and lay out a sample label now, so a bad template
        or a product name that cannot fit stops the station at start, not after a write."""
        for product in self._config.products:
            if product.label:
                template = self.template(product)
                check_product(template, product, claim_secret=placeholders.SAMPLES[
                    "claim_secret"] if product.claim_secret_days else None)
                if product.claim_secret_days and not prints_claim_secret(template):
                    raise TemplateError(template.source, "(template)",
                                        f"product {product.id} gives each unit a claim secret "
                                        "(claim_secret_days), but this template never prints "
                                        "{claim_secret}: the buyer could not claim the unit")

    def data(self, product: Product, uci: str,
             date: datetime.date | None = None) -> LabelData:
        """What unit `uci`'s label shows (dated today unless `date` is given)."""
        secret = None
        if product.claim_secret_days:
            if self._secrets is None:
                raise LabelError("the product's labels carry a claim secret, but the station "
                                 "has no claim key")
            secret = self._secrets.secret(uci)
        return LabelData.for_product(product, uci, date=date or datetime.date.today(),
                                     claim_secret=secret)

    async def make(self, uci: str, product: Product, actor: str,
                   reason: str | None = None) -> Path:
        """Render the unit's label, keep the PDF, journal `labelled`; the worker prints it."""
        unit = await self._journal.unit(uci)
        copy = 1 + sum(1 for e in unit.events if e.kind == "labelled")
        keep = self._config.printer.keep
        pdf = keep / f"{uci}-{copy}.pdf"
        data = self.data(product, uci)
        digest = await asyncio.to_thread(_render, self.template(product), data, pdf)
        failpoints.hit("label.rendered")
        event: dict[str, object] = {"pdf": str(pdf), "sha256": digest, "copy": copy,
                                    "template": product.label}
        if reason is not None:
            event["reason"] = reason
        if self.printing:  # the printer owes it (journal: labels_owed)
            event["printer"] = self._config.printer.queue
        await self._journal.record(uci, "labelled", actor, event, state="labelled")
        self._wakeup.set()
        return pdf

    async def run_forever(self) -> None:
        """Print every unit waiting in state `labelled`, oldest first, for as long as the
        station runs; a printer that is down is retried, the rest of the station goes on."""
        printer = self._config.printer
        delay = 1.0
        while True:
            if printer.enabled:
                try:
                    await self._print_waiting()
                    delay = 1.0
                    self.printer_state, self.printer_reason = "idle", ""
                except PrinterUnavailable as exc:
                    if self.printer_reason != exc.reason:
                        log.warning("printer %s: %s -> %s (retrying)", printer.queue,
                                    exc.reason, exc.action)
                    self.printer_state, self.printer_reason = "unavailable", exc.reason
                    delay = min(delay * 2, RETRY_MAX)
            self._wakeup.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

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

    async def _print_waiting(self) -> None:
        for uci in await self._journal.labels_owed():
            try:
                await self.print_unit(uci)
            except PrinterUnavailable:
                raise  # the printer, not this label: wait and retry them all
            except PrintRejected as exc:
                # CUPS refuses this job outright: retrying would refuse it again.
                await self._journal.record(uci, "print_failed", "printer",
                                           {"reason": exc.reason, "action": exc.action},
                                           state="failed")
                log.error("label of %s refused: %s -> %s", uci, exc.reason, exc.action)
            except Exception:  # one bad label must not stop the others or the worker
                log.exception("printing the label of %s failed; it is retried", uci)

    async def print_unit(self, uci: str) -> None:
        """Print the unit's newest label, once: adopt a job already submitted for it."""
        printer = self._config.printer
        server = printer.server or None
        events = (await self._journal.unit(uci)).events
        labelled = _last(events, "labelled")
        if labelled is None or "pdf" not in labelled.data:
            return  # a sheet run's label: printed with its sheet, not by this queue
        copy = labelled.data["copy"]
        actor = f"printer:{printer.queue}"
        after = [e for e in events if e.seq > labelled.seq]
        submitted = _last(after, "print_submitted")
        if submitted is not None:
            job = str(submitted.data["job"])
        else:
            title = f"label {uci} {copy}"
            # Journaled before `lp`: only a print cut short by a crash is looked for in CUPS.
            intent = _last(after, "print_submitting")
            found = [] if intent is None else await find_jobs(
                title, printer.queue, server, since=_unix(intent.at) - CLOCK_SLACK)
            if found:
                job = found[-1]
            else:
                if intent is None:
                    await self._journal.record(uci, "print_submitting", actor,
                                               {"queue": printer.queue, "copy": copy,
                                                "title": title})
                job = await submit(Path(labelled.data["pdf"]), printer.queue, title=title,
                                   copies=printer.copies, options=printer.options,
                                   server=server)
                failpoints.hit("print.submitted")
            await self._journal.record(uci, "print_submitted", actor,
                                       {"job": job, "queue": printer.queue, "copy": copy,
                                        "adopted": bool(found)})
        try:
            await wait_printed(job, PRINT_TIMEOUT, server)
        except PrintRejected as exc:
            # Canceled or aborted in CUPS: the label is still owed; a new job next round.
            await self._journal.record(uci, "print_failed", actor,
                                       {"job": job, "reason": exc.reason, "copy": copy})
            await self._journal.record(uci, "labelled", actor,
                                       {**labelled.data, "retry_of": job}, state="labelled")
            return
        failpoints.hit("print.done")
        await self._journal.record(uci, "printed", actor,
                                   {"job": job, "copy": copy, "copies": printer.copies},
                                   state="printed")
        log.info("printed the label of %s (copy %d, job %s)", uci, copy, job)


class Label:
    """The pipeline step after `verified`: a label only for a unit whose file verified, so a
    label always matches its device."""

    name = "labelling"

    def __init__(self, labels: Labels) -> None:
        self._labels = labels

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        if not run.product.label or run.uci is None:
            return
        if (await ledger.unit(run.uci)).last("labelled") is not None:
            return  # one label a unit, however often it is plugged in; reprints are asked for
        try:
            pdf = await self._labels.make(run.uci, run.product, run.actor)
        except (LabelError, OSError) as exc:
            raise LabelFailed(f"the label could not be made: {exc}") from exc
        where = "queued for the printer" if self._labels.printing else "kept (no printer)"
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


def _unix(at: str) -> float:
    """An event's time (ISO 8601, UTC) as a Unix time."""
    return datetime.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def _last(events: list[Event], kind: str) -> Event | None:
    for event in reversed(events):
        if event.kind == kind:
            return event
    return None


def prints_claim_secret(template: Template) -> bool:
    """Whether any text, QR or barcode of `template` shows the unit's claim secret."""
    for element in template.elements:
        for attribute in ("text", "content"):
            value = getattr(element, attribute, None)
            if isinstance(value, str) and "claim_secret" in placeholders.names_in(value):
                return True
    return False
