"""`factory label render|sheet|reprint`: label PDFs (or native ZPL) for units in the journal."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path

from factory import claim_secret
from factory import uci as uci_codec
from factory.cli.common import CliError, Subcommands, actor, command, group, with_journal
from factory.config import StationConfig
from factory.journal.interface import Journal


def register(sub: Subcommands) -> None:
    actions = group(sub, "label", "Render, sheet and reprint labels.")
    p = command(actions, "render", cmd_label_render,
                "Render the labels of existing units to a PDF, or to native ZPL at the "
                "[printer] dpi.")
    p.add_argument("ucis", nargs="+", metavar="UCI")
    p.add_argument("--format", choices=("pdf", "zpl"), default="pdf")
    p.add_argument("-o", "--output", required=True, type=Path)
    p = command(actions, "sheet", cmd_label_sheet,
                "Issue N new UCIs and lay their labels out on sheets (labelled before any "
                "write; the line flashes them later).")
    p.add_argument("--product", required=True)
    p.add_argument("--count", required=True, type=int)
    p.add_argument("--sheet", default="a4-3x8", help="sheet template in the labels folder")
    p.add_argument("-o", "--output", required=True, type=Path)
    p = command(actions, "reprint", cmd_label_reprint,
                "Print a unit's label again; the reason and the copy number are journaled.")
    p.add_argument("uci")
    p.add_argument("--reason", required=True)


def cmd_label_render(args: argparse.Namespace) -> int:
    from factory.labels.products import ProductLabels
    from factory.labels.render import render_labels
    from factory.labels.zpl import render_zpl

    async def work(journal: Journal, config: StationConfig) -> int:
        labels = ProductLabels(config, claim_secret.for_station(config))
        data, template = [], None
        for text in args.ucis:
            unit = await journal.unit(uci_codec.parse(text))
            product = config.product(unit.product)
            if product is None or not product.label:
                raise CliError(f"unit {unit.uci}'s product {unit.product} has no label "
                               "template in this config")
            if template is not None and labels.template(product) != template:
                raise CliError("these units use different label templates; render them apart")
            template = labels.template(product)
            data.append(labels.data(product, unit.uci))
        assert template is not None
        if args.format == "zpl":
            dpi = config.printer.dpi
            pages = await asyncio.to_thread(render_zpl, template, data, args.output, dpi)
            print(f"{args.output}: {pages} label(s) in ZPL at {dpi} dpi, template "
                  f"{template.name}")
        else:
            pages = await asyncio.to_thread(render_labels, template, data, args.output)
            print(f"{args.output}: {pages} label(s), template {template.name}")
        return 0

    return with_journal(args, work)


def cmd_label_sheet(args: argparse.Namespace) -> int:
    from factory.issuing import issue_request
    from factory.labels.products import ProductLabels
    from factory.labels.render import render_sheet
    from factory.labels.sheet import load_sheet

    async def work(journal: Journal, config: StationConfig) -> int:
        product = config.product(args.product)
        if product is None:
            raise CliError(f"{args.product!r} is not a product of {config.source}")
        sheet = load_sheet(config.labels_dir / f"{args.sheet}.toml")
        sheet = dataclasses.replace(sheet, label=sheet.label.with_qr_content(product.qr))
        body, _ = issue_request({"product": product.id, "count": args.count}, config,
                                actor())
        ucis = (await journal.issue(body)).ucis
        labels = ProductLabels(config, claim_secret.for_station(config))
        pages = await asyncio.to_thread(
            render_sheet, sheet, [labels.data(product, u) for u in ucis], args.output)
        # Labelled before any write: the line flashes these UCIs later (by hardware id).
        await asyncio.gather(*(
            journal.record(u, "labelled", actor(), {"sheet": str(args.output),
                                                    "page": i // sheet.cells + 1,
                                                    "cell": i % sheet.cells + 1},
                           state="labelled")
            for i, u in enumerate(ucis)))
        print(f"{args.output}: {len(ucis)} new UCIs on {pages} sheet(s) of {sheet.cells}")
        return 0

    return with_journal(args, work)


def cmd_label_reprint(args: argparse.Namespace) -> int:
    from factory.labels.making import LabelMaker
    from factory.labels.products import ProductLabels

    async def work(journal: Journal, config: StationConfig) -> int:
        if not args.reason.strip():
            raise CliError("--reason must say why the label is printed again")
        unit = await journal.unit(uci_codec.parse(args.uci))
        product = config.product(unit.product)
        if product is None or not product.label:
            raise CliError(f"unit {unit.uci}'s product has no label template in this config")
        if unit.state == "voided":
            raise CliError(f"unit {unit.uci} is voided; its label must not be printed again")
        # The running station's print queue finds the new `labelled` in the journal.
        maker = LabelMaker(config, journal,
                           ProductLabels(config, claim_secret.for_station(config)))
        pdf = await maker.make(unit.uci, product, actor(), reason=args.reason.strip())
        where = (f"the station prints it on {config.printer.name}" if config.printer.enabled
                 else "no printer is configured: print the PDF by hand")
        print(f"reprint of {uci_codec.human(unit.uci)} journaled; {pdf}; {where}")
        return 0

    return with_journal(args, work)
