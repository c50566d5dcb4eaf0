"""Per-copy CPU of signing the footered copies of one newsletter: each copy alone vs fan-out.

    .venv/bin/python bench/fanout_bench.py [--copies 100] [--repeat 5]

For 10 KB and 100 KB newsletters (bench/payload.py), the real footer planner (relay/mail/mime_footer.py)
makes one body per recipient; then, interleaved `--repeat` times, DkimSigner.sign signs each copy
alone and FanoutSigning.sign (relay/mail/dkim_fanout.py) signs them as the relay now does: the body
runs and header values every copy shares are worked out once per message. Also the body hash
alone (where the saving is). CPU time of this process (time.process_time), best of the
repeats: the machine is shared, and CPU time is what other load disturbs least.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

import payload  # noqa: E402
from relay.mail.dkim import DkimSigner, body_hash  # noqa: E402
from relay.mail.dkim_fanout import FanoutSigning  # noqa: E402
from relay.mail.message import Message  # noqa: E402
from relay.mail.mime_footer import plan_footer  # noqa: E402


def copies(size: int, n: int) -> tuple[Message, list[tuple[list[bytes], bytes]]]:
    message = Message(payload.newsletter(size))
    plan = plan_footer(message.headers, message.body)
    assert plan is not None
    out = []
    for i in range(n):
        r = f"{i}rcpt@example.org"
        body = plan.apply(f"You get this as {r} on Bench News.\nUnsubscribe: https://relay.bench.example/u/{i:032x}",
                          f"<p>You get this as {r}.</p><p><a href=\"https://relay.bench.example/u/{i:032x}\">"
                          "Unsubscribe</a></p>").body
        headers = [f"Received: from bench by relay for <{r}>\r\n".encode(),
                   f"List-Unsubscribe: <https://relay.bench.example/u/{i:032x}>\r\n".encode(),
                   b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", *message.headers]
        out.append((headers, body))
    return message, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    signer = DkimSigner("bench.example", "b1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    now = int(time.time())
    print("| newsletter | per copy: alone µs | fan-out µs | fan-out / alone | body hash alone µs | fan-out µs |")
    print("|---|--:|--:|--:|--:|--:|")
    for size in (10240, 102400):
        message, items = copies(size, args.copies)
        best = {"alone": 1e9, "fan": 1e9, "bh_alone": 1e9, "bh_fan": 1e9}
        for _ in range(args.repeat):
            t = time.process_time()
            for headers, body in items:
                signer.sign(headers, body, now)
            best["alone"] = min(best["alone"], time.process_time() - t)
            t = time.process_time()
            fan = FanoutSigning(signer, message.body)  # one per message, as Transaction makes it
            for headers, body in items:
                fan.sign(headers, body, now)
            best["fan"] = min(best["fan"], time.process_time() - t)
            t = time.process_time()
            for _, body in items:
                body_hash(body)
            best["bh_alone"] = min(best["bh_alone"], time.process_time() - t)
            t = time.process_time()
            fan = FanoutSigning(signer, message.body)
            for _, body in items:
                fan.body_hash(body)
            best["bh_fan"] = min(best["bh_fan"], time.process_time() - t)
        us = {k: v / args.copies * 1e6 for k, v in best.items()}
        print(f"| {size // 1024} KB × {args.copies} | {us['alone']:.0f} | {us['fan']:.0f} | "
              f"{us['fan'] / us['alone']:.2f}× | {us['bh_alone']:.0f} | {us['bh_fan']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
