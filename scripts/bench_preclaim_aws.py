"""Time register + pre-claim through the aws-iot upstream against a local moto server:
concurrent (as the outbox and batch runs call it) against a sequential baseline in the same run.

    .venv/bin/python scripts/bench_preclaim_aws.py [--units 200] [--concurrency 16]

moto (tests/moto_iot_server.py) runs as its own process on 127.0.0.1 with fake credentials;
keys and CSRs (ECDSA P-256) are made before the clock starts. It prints units/s for both and
their ratio. Against real AWS the round trips are longer, so concurrency gains more.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from pathlib import Path

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from factory.uci import new_uci
from factory.upstream import Registration
from factory.upstream.aws import AwsIotUpstream, make_client
from tests.aws_iot import FAKE_CREDENTIALS, REGION, MotoServer

POLICY = "bench-units"


def csr(uci: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uci)])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


async def run(url: str, units: list[tuple[str, str]], concurrency: int) -> float:
    """Seconds to register and pre-claim every unit, `concurrency` at a time."""
    adapter = AwsIotUpstream(make_client(REGION, endpoint_url=url, pool=max(10, concurrency)),
                             station="bench", policy=POLICY, workers=concurrency)
    slots = asyncio.Semaphore(concurrency)
    created = dt.datetime.now(dt.UTC)

    async def one(uci: str, request: str) -> None:
        async with slots:
            await adapter.register(Registration(uci=uci, product="bench-product",
                                                hardware_id=uci[:12], model="B-1",
                                                name="Bench unit", created=created))
            issued = await adapter.preclaim(uci, "bench-fleet", request)
            assert issued.created

    await adapter.register(Registration(uci=new_uci(), product="bench-product", hardware_id="",
                                        model="B-1", name="warm-up", created=created))
    start = time.perf_counter()
    try:
        await asyncio.gather(*(one(uci, request) for uci, request in units))
    finally:
        adapter.close()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    os.environ.update(FAKE_CREDENTIALS)
    moto = MotoServer()
    try:
        boto3.client("iot", region_name=REGION, endpoint_url=moto.url).create_policy(
            policyName=POLICY, policyDocument='{"Version": "2012-10-17", "Statement": []}')
        batches = [[(uci, csr(uci)) for uci in (new_uci() for _ in range(args.units))]
                   for _ in range(2)]
        sequential = asyncio.run(run(moto.url, batches[0], 1))
        concurrent = asyncio.run(run(moto.url, batches[1], args.concurrency))
    finally:
        moto.stop()
    for label, seconds in (("sequential", sequential),
                           (f"concurrent ({args.concurrency})", concurrent)):
        print(f"{label:>16}: {args.units} units in {seconds:6.2f} s = "
              f"{args.units / seconds:7.1f} units/s")
    print(f"{'ratio':>16}: {sequential / concurrent:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
