"""Cost of one mail log line (relay/base/maillog.py) against a plain `logging` line, on this machine.

    .venv/bin/python bench/log_bench.py

Prints CPU µs per line (process time: the machine may be shared), best of 7 rounds of 3,000, lines written to /dev/null; `sum(range(100))` is the
yardstick for how busy the machine is (about 0.7 µs on a quiet bench machine).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.base import maillog as logs  # noqa: E402


def best(fn, rounds: int = 7, n: int = 3000) -> float:  # noqa: ANN001
    out = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(n):
            fn()
        logs.writer.flush()
        out = min(out, (time.process_time() - started) / n * 1e6)
    return out


def main() -> None:
    logs.configure_logging(False)
    assert logs._handler is not None
    logs._handler.stream = open("/dev/null", "w")  # noqa: SIM115 - for the life of the run
    plain = logging.getLogger("bench.plain")

    def mail() -> None:
        logs.mail_line(event="deliver", qid="A1B2C3D4E5F6", client="acme", list="news", rcpt="alice@example.org",
                       stage="delivery", rule="delivered", reply="250 2.0.0 Ok: queued as 4QX7Z1A2B3",
                       upstream_qid="4QX7Z1A2B3", attempt=1, elapsed_ms=1.3)

    print(f"yardstick sum(range(100)): {best(lambda: sum(range(100))):6.1f} µs")
    for fmt in ("text", "json"):
        logs.apply_settings(fmt, True)
        logs.writer.batching = 0
        print(f"{fmt:4} through logging, one line: {best(lambda: plain.info('plain line %s', 1)):6.1f} µs")
        print(f"{fmt:4} mail line, written at once:  {best(mail):6.1f} µs")
        logs.writer.batching = 1  # as in `relay serve`: written every 0.1 s
        print(f"{fmt:4} mail line, batched:          {best(mail):6.1f} µs")


if __name__ == "__main__":
    main()
