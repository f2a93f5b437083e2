#!/usr/bin/env python3
"""Long-running fuzzer for the SIP parser and stream framer.

Checks the invariant CI checks briefly with hypothesis, for as long as you
like: any bytes either parse or raise SIPParseError (never another
exception), what parses re-serializes to a fixed point, and the stream framer
gives the same results whether fed whole or in random pieces.

    .venv/bin/python fuzz/fuzz_parser.py --seconds 600 --seed 1

Exit status 1 and the failing input (repr) on the first violation.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidim.sip import SIPParseError, StreamFramer, parse_message  # noqa: E402

ALPHABET = b'\r\n :;,<>"\\@=%[]/?0123456789abcSIPsip\x00\x7f\xff\xc3\xa9\t'


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    if rng.random() < 0.1:
        data += rng.choice(seeds)
    for _ in range(rng.randint(0, 10)):
        if not data:
            break
        pos = rng.randrange(len(data))
        action = rng.randrange(6)
        if action == 0:
            data[pos] = rng.choice(ALPHABET)
        elif action == 1:
            data.insert(pos, rng.choice(ALPHABET))
        elif action == 2:
            del data[pos]
        elif action == 3:
            del data[pos:]
        elif action == 4:
            end = rng.randint(pos, len(data))
            data[pos:pos] = data[pos:end]
        else:
            data[pos] = rng.randrange(256)
    return bytes(data)


def check_datagram(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SIPParseError:
        return
    wire = message.to_bytes()
    if parse_message(wire).to_bytes() != wire:
        raise AssertionError("serialization is not a fixed point")


def framer_results(chunks: list[bytes]) -> list[object]:
    framer = StreamFramer(max_message_size=2000)
    out: list[object] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        while True:
            try:
                message = framer.next_message()
            except SIPParseError as exc:
                out.append((framer.broken, exc.status_hint))
                if framer.broken:
                    return out
                continue
            if message is None:
                break
            out.append(message.to_bytes())
    return out


def check_stream(rng: random.Random, data: bytes) -> None:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 12)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    if framer_results([data]) != framer_results([c for c in chunks if c]):
        raise AssertionError("framer results depend on how the stream was split")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    seeds = [p.read_bytes() for p in sorted((ROOT / "tests" / "corpus").glob("rfc*/*"))]
    deadline = time.monotonic() + args.seconds
    cases = 0
    while time.monotonic() < deadline:
        data = mutate(rng, seeds)
        try:
            check_datagram(data)
            check_stream(rng, data)
        except Exception:
            traceback.print_exc()
            print(f"seed={seed} case={cases} input={data!r}")
            return 1
        cases += 1
    print(f"ok: {cases} inputs in {args.seconds:.0f} s (seed {seed}), no invariant broken")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
