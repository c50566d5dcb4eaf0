"""Content stage benchmark: the stage's cost against one `email` parse of the same message.

    .venv/bin/python bench/content_bench.py [--runs 200]

For a 10 KB and a 100 KB newsletter (multipart/alternative, quoted-printable text and HTML with
links, images and tables, a realistic legitimate message: no rule hits, so the whole text is
scanned), measured in the same run:
  * baseline: `email.message_from_bytes(raw, policy=email.policy.default)` (parse only);
  * the content stage: `filters.content.check(ctx)` on the same bytes (MIME walk, decoding,
    HTML to text, normalisation, rule matching, link and header checks).
Prints medians and the ratio. Target: the stage costs at most one such parse (ratio <= 1.0).
Only prints; it does not write bench/RESULTS.md (shared with other benchmarks).
"""
from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "corpus" / "content"))

import report  # noqa: E402  (the corpus helpers: demo config and a MessageContext)
from filters import content  # noqa: E402

PARAGRAPH = ("Our autumn range is here: grape and walnut loaf, plum tart and a new rye sourdough. "
             "Free delivery in Scunthorpe and Essex on orders over 30 pounds; see the cocktail recipes "
             "and the wine pairing notes from our analysis of last year's favourites. ")


def newsletter(size: int) -> bytes:
    text_parts, html_parts = [], []
    n = 0
    while sum(map(len, html_parts)) + sum(map(len, text_parts)) < size * 0.9:
        n += 1
        text_parts.append(f"{n}. {PARAGRAPH}\nhttps://demo.example/item/{n}\n")
        html_parts.append(
            f'<table role="presentation" style="width:100%"><tr><td style="padding:8px">'
            f'<h2 style="font-family:Arial">Item {n}</h2><p style="color:#333">{PARAGRAPH}</p>'
            f'<a href="https://demo.example/item/{n}?utm_source=news">demo.example/item/{n}</a> '
            f'<img src="https://demo.example/img/{n}.jpg" alt="Item {n} photo" width="120"></td></tr></table>\n')
    msg = EmailMessage()
    msg["From"] = "Demo Shop <news@demo.example>"
    msg["To"] = "reader@example.org"
    msg["Subject"] = "Our autumn range"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<bench@demo.example>"
    msg.set_content("".join(text_parts), cte="quoted-printable")
    msg.add_alternative(f"<html><body>{''.join(html_parts)}</body></html>", subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=email.policy.SMTP)


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = report.demo_config(Path(tmp))
        client = config.clients["demo"]
        content.ruleset_for()  # compiled once, as in a running relay
        loop = asyncio.new_event_loop()
        rows = []
        for label, size in (("10 KB", 10_000), ("100 KB", 100_000)):
            raw = newsletter(size)
            ctx = report.context(config, client, raw)
            verdict = loop.run_until_complete(content.check(ctx))
            assert not verdict.refuses, verdict
            parse = median_ms(lambda: email.message_from_bytes(raw, policy=email.policy.default), args.runs)
            stage = median_ms(lambda: loop.run_until_complete(content.check(ctx)), args.runs)
            rows.append((label, len(raw), parse, stage))
        loop.close()
    print("| message | bytes | email parse (policy.default) ms | content stage ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, size, parse, stage in rows:
        print(f"| {label} | {size} | {parse:.3f} | {stage:.3f} | {stage / parse:.2f} |")


if __name__ == "__main__":
    main()
