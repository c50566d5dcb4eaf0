"""Prometheus metrics for one relay process: decisions by stage and rule, copies, latency."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """A registry per runtime, so several relays in one test process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("relay_messages", "Messages by final SMTP reply class",
                                ["result"], registry=self.registry)
        self.refusals = Counter("relay_refusals", "Recipients or messages refused, by stage and rule",
                                ["stage", "rule"], registry=self.registry)
        self.copies = Counter("relay_copies_delivered", "Copies accepted by the upstream",
                              registry=self.registry)
        self.upstream_tempfails = Counter("relay_upstream_tempfails", "Messages answered 451 4.4.1",
                                          registry=self.registry)
        self.unsubscribes = Counter("relay_unsubscribes", "Unsubscribes by channel", ["channel"],
                                    registry=self.registry)
        self.latency = Histogram("relay_data_seconds", "Time from end of DATA to the reply",
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)

    def refused(self, stage: str, rule: str) -> None:
        self.refusals.labels(stage or "pipeline", rule or "unknown").inc()

    def copies_delivered(self, n: int) -> None:
        if n:
            self.copies.inc(n)

    def upstream_tempfail(self) -> None:
        self.upstream_tempfails.inc()

    def reply(self, reply: str) -> None:
        self.messages.labels({"2": "accepted", "4": "tempfail", "5": "rejected"}.get(reply[:1], "other")).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
