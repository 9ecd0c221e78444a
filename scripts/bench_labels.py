"""Benchmark label PDFs: our renderer against a naive baseline, three QR libraries, and ZPL.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench_labels.py                  # 1,000 and 10,000 labels
    .venv/bin/python scripts/bench_labels.py --counts 1000 --qr-samples 200

What it measures, in one run:

1. QR matrix generation for the same content at the same error level (M) with zxing-cpp
   (what we use), segno and qrcode, for the thermal template's claim URL and for a bare UCI;
   each library's symbol is decoded once to show they carry the same content.
2. Labels per second into ONE PDF of the thermal 50 x 30 mm template, for each count, by:
   * ours: ``render_labels`` (vector QR, pages streamed to the file as they come);
   * baseline: the naive way: ``qrcode`` renders each QR to a PIL image, reportlab's canvas
     places it with ``drawImage`` next to the same text, ``showPage`` per label, ``save()``;
   * ours+segno (smallest count only): our renderer with segno making the matrices, to show
     what the QR library costs end to end;
   * zpl: the same template and layout as native ZPL II at 203 dpi (``render_zpl``: the
     printer draws QR, barcode and text, so no matrices and no PDF objects are made).
   Each case runs in a fresh process, which reports its time and its peak RSS growth
   (Linux's VmHWM, reset just before rendering, minus the RSS then); ours also reports
   tracemalloc's peak.
3. Ratios: ours / baseline per count (target >= 3x), ours against 300 labels/s, and ZPL's
   labels/s and bytes per label against our PDF path's (target >= 5x the labels/s).

Missed targets are reported, not failed; exit status 1 only if a PDF has the wrong page count.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "labels" / "thermal-50x30.toml"
URL = "https://claim.example.com/c/{uci}"
TARGET_RATE = 300.0
TARGET_RATIO = 3.0
TARGET_ZPL_RATIO = 5.0


def labels(count: int) -> Iterator[Any]:
    from factory import uci
    from factory.labels.layout import LabelData

    # Drawn in blocks, so the input does not grow with the count the way a list would.
    for value in (v for start in range(0, count, 1000)
                  for v in uci.new_ucis(min(1000, count - start))):
        yield LabelData(uci=value, product="01H4R15D3Q7K9M2X8Z5V6W4T0N", name="Acme Air Sensor",
                        model="AQ-100", date=datetime.date(2026, 11, 23))


# -- the QR libraries ------------------------------------------------------------------------

def _zxing(content: str) -> list[bytes]:
    from factory.labels.symbols import qr_matrix

    return list(qr_matrix(content, "M").rows)


def _segno(content: str) -> list[bytes]:
    import segno

    return [bytes(row) for row in segno.make_qr(content, error="m", boost_error=False).matrix]


def _qrcode(content: str) -> list[bytes]:
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    qr.add_data(content)
    qr.make(fit=True)
    return [bytes(row) for row in qr.get_matrix()]


QR_LIBRARIES: dict[str, Callable[[str], list[bytes]]] = {
    "zxing-cpp": _zxing, "segno": _segno, "qrcode": _qrcode}


def _decoded(rows: list[bytes]) -> str:
    """Decode a matrix (with a drawn quiet zone) with zxing-cpp's reader."""
    import zxingcpp
    from PIL import Image

    size, scale, quiet = len(rows), 4, 4
    image = Image.new("L", ((size + 2 * quiet) * scale,) * 2, 255)
    for r, row in enumerate(rows):
        for c, dark in enumerate(row):
            if dark:
                x, y = (c + quiet) * scale, (r + quiet) * scale
                image.paste(0, (x, y, x + scale, y + scale))
    found = zxingcpp.read_barcodes(image)
    return found[0].text if found else "<nothing decoded>"


def bench_qr(samples: int) -> None:
    from factory import uci

    values = uci.new_ucis(samples)
    print(f"QR matrix generation, level M, {samples} contents each (ms per symbol):")
    for label, fmt in (("claim URL", URL), ("bare UCI", "{uci}")):
        contents = [fmt.format(uci=value) for value in values]
        times = {}
        for name, make in QR_LIBRARIES.items():
            start = time.perf_counter()
            for content in contents:
                make(content)
            times[name] = (time.perf_counter() - start) / samples * 1000
            rows = make(contents[0])
            same = _decoded(rows) == contents[0]
            print(f"  {label:9} {name:9} {times[name]:7.3f} ms  version "
                  f"{(len(rows) - 17) // 4} ({len(rows)}x{len(rows)})  decodes to the content: "
                  f"{'yes' if same else 'NO'}")
        print(f"  {label:9} zxing-cpp is {times['segno'] / times['zxing-cpp']:.0f}x segno, "
              f"{times['qrcode'] / times['zxing-cpp']:.0f}x qrcode; segno is "
              f"{times['qrcode'] / times['segno']:.2f}x qrcode")


# -- the renderers (each run in a child process) ----------------------------------------------

def render_ours(count: int, out: Path) -> int:
    from factory.labels.render import render_labels
    from factory.labels.template import load_template

    return render_labels(load_template(TEMPLATE), labels(count), out)


def render_ours_segno(count: int, out: Path) -> int:
    import segno

    from factory.labels import symbols

    def segno_matrix(content: str, level: symbols.Level) -> symbols.QrMatrix:
        qr = segno.make_qr(content, error=level.lower(), boost_error=False)
        return symbols.QrMatrix(tuple(bytes(row) for row in qr.matrix), level)

    symbols.qr_matrix = segno_matrix
    return render_ours(count, out)


def render_baseline(count: int, out: Path) -> int:
    """The naive way: a PIL image of each QR from qrcode, placed with reportlab's drawImage."""
    import qrcode
    from reportlab.lib.units import mm
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen.canvas import Canvas

    from factory import uci

    canvas = Canvas(str(out), pagesize=(50 * mm, 30 * mm))
    pages = 0
    for data in labels(count):
        qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10,
                           border=4)
        qr.add_data(URL.format(uci=data.uci))
        qr.make(fit=True)
        image = qr.make_image().get_image()
        canvas.drawImage(ImageReader(image), 28 * mm, 8 * mm, 22 * mm, 22 * mm)
        canvas.setFont("Helvetica-Bold", 8)
        canvas.drawString(1.5 * mm, 26 * mm, data.name)
        canvas.setFont("Helvetica", 6.5)
        canvas.drawString(1.5 * mm, 22.5 * mm, data.model)
        canvas.setFont("Helvetica", 6)
        canvas.drawString(1.5 * mm, 6 * mm, "Claim ID")
        canvas.setFont("Courier-Bold", 10)
        canvas.drawString(1.5 * mm, 2 * mm, uci.human(data.uci))
        canvas.showPage()
        pages += 1
    canvas.save()
    return pages


def render_zpl(count: int, out: Path) -> int:
    from factory.labels.template import load_template
    from factory.labels.zpl import render_zpl as zpl

    return zpl(load_template(TEMPLATE), labels(count), out, 203)


RENDERERS: dict[str, Callable[[int, Path], int]] = {
    "ours": render_ours, "ours+segno": render_ours_segno, "baseline": render_baseline,
    "zpl": render_zpl}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Start the peak-RSS mark (VmHWM) afresh, so import-time peaks do not hide the run's."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def child(name: str, count: int, out: Path, trace: bool) -> None:
    """Render in this fresh process and print one JSON line of figures."""
    RENDERERS[name](1, out)  # import everything and warm caches before measuring
    _reset_peak_rss()
    before = _status_kib("VmRSS")
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    pages = RENDERERS[name](count, out)
    elapsed = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    peak = _status_kib("VmHWM")
    print(json.dumps({"pages": pages, "seconds": elapsed, "rss_growth_kib": peak - before,
                      "traced_peak": traced, "bytes": out.stat().st_size}))


def run_case(name: str, count: int, folder: Path, *, trace: bool = False) -> dict[str, Any]:
    out = folder / f"{name}-{count}.pdf"
    args = [sys.executable, __file__, "--child", name, str(count), str(out)]
    if trace:
        args.append("--trace")
    done = subprocess.run(args, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1000,10000", help="label counts, comma-separated")
    parser.add_argument("--qr-samples", type=int, default=500)
    parser.add_argument("--child", nargs=3, metavar=("RENDERER", "COUNT", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]), args.trace)
        return 0

    counts = [int(c) for c in args.counts.split(",")]
    bench_qr(args.qr_samples)
    print(f"\nLabels into one PDF ({TEMPLATE.name}); each case in a fresh process:")
    ok = True
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        rates: dict[tuple[str, int], float] = {}
        sizes: dict[tuple[str, int], float] = {}
        cases = [(name, n) for n in counts for name in ("ours", "baseline", "zpl")]
        cases.append(("ours+segno", counts[0]))
        for name, count in cases:
            result = run_case(name, count, folder)
            rate = count / result["seconds"]
            rates[name, count] = rate
            sizes[name, count] = result["bytes"] / count
            ok &= result["pages"] == count
            print(f"  {name:10} {count:6} labels: {rate:7.0f} labels/s  {result['seconds']:6.2f} s"
                  f"  peak RSS growth {result['rss_growth_kib'] / 1024:6.1f} MiB  file "
                  f"{result['bytes'] / count:5.0f} bytes/label  pages ok: "
                  f"{result['pages'] == count}")
        for count in counts:
            traced = run_case("ours", count, folder, trace=True)["traced_peak"]
            print(f"  ours       {count:6} labels: tracemalloc peak {traced / 1024:7.0f} KiB")
    print("\nRatios and targets:")
    for count in counts:
        ours, base = rates["ours", count], rates["baseline", count]
        rate_ok = "met" if ours >= TARGET_RATE else "MISSED"
        ratio_ok = "met" if ours / base >= TARGET_RATIO else "MISSED"
        print(f"  {count:6} labels: ours {ours:.0f}/s (target >= {TARGET_RATE:.0f}: {rate_ok}), "
              f"{ours / base:.1f}x the baseline (target >= {TARGET_RATIO:.0f}x: {ratio_ok})")
    for count in counts:
        zpl, ours = rates["zpl", count], rates["ours", count]
        zpl_ok = "met" if zpl / ours >= TARGET_ZPL_RATIO else "MISSED"
        print(f"  {count:6} labels: ZPL {zpl:.0f}/s, {zpl / ours:.1f}x our PDF path (target >= "
              f"{TARGET_ZPL_RATIO:.0f}x: {zpl_ok}); {sizes['zpl', count]:.0f} bytes/label, "
              f"{sizes['ours', count] / sizes['zpl', count]:.1f}x smaller than the PDF's "
              f"{sizes['ours', count]:.0f}")
    segno_rate = rates["ours+segno", counts[0]]
    print(f"  with segno instead of zxing-cpp our renderer would do {segno_rate:.0f}/s "
          f"({rates['ours', counts[0]] / segno_rate:.1f}x slower)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
