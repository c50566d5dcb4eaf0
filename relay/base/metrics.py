"""Prometheus metrics for one relay process: decisions by stage and rule, copies, latency, event-loop lag."""
from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


_REPLY_CLASS = {"2": "accepted", "4": "tempfail", "5": "rejected"}


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
        self.feedback_reports = Counter("relay_feedback_reports", "Mail to the relay's own addresses, by what it was",
                                        ["kind"], registry=self.registry)
        self.feedback_outcomes = Counter("relay_feedback_outcomes", "Bounces and complaints by classification",
                                         ["kind", "category"], registry=self.registry)
        self.feedback_suppressions = Counter("relay_feedback_suppressions", "Suppressions added by feedback",
                                             ["kind"], registry=self.registry)
        self.webhook_posts = Counter("relay_webhook_posts", "Webhook POSTs by result", ["result"],
                                     registry=self.registry)
        self.latency = Histogram("relay_data_seconds", "Time from end of DATA to the reply",
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)

        # how late a 50 ms timer fires: CPU work left on the loop (signing, MIME, a blocking call)
        # shows here as the time every session on it waited
        self.loop_lag = Histogram("relay_event_loop_lag_seconds", "Delay of a 50 ms event-loop timer beyond its due time",
                                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1), registry=self.registry)
        self.loop_lag_max = Gauge("relay_event_loop_lag_max_seconds", "Largest event-loop timer delay since start",
                                  registry=self.registry, multiprocess_mode="max")
        # objects kept out of the cyclic collector's walks (relay.base.heap.settle_heap), the least of
        # the live workers: 0 for a moment while a restarted worker starts; 0 for longer would mean
        # every full collection walks the whole start-up heap again, a stall of ~85 ms
        self.gc_frozen = Gauge("relay_gc_frozen_objects", "Objects frozen out of the cyclic garbage collector's walks",
                               registry=self.registry, multiprocess_mode="livemin")
        # SPEC §12: per-client counters, and whether the last copy handed upstream got an answer
        self.client_messages = Counter("relay_client_messages", "Messages by client and SMTP reply class",
                                       ["client", "result"], registry=self.registry)
        self.client_recipients = Counter("relay_client_recipients_refused", "Recipients refused at RCPT by client",
                                         ["client"], registry=self.registry)
        self.client_copies = Counter("relay_client_copies", "Copies handed upstream by client and outcome "
                                     "(delivered, temporary, permanent)", ["client", "outcome"], registry=self.registry)
        self.upstream_attempts = Counter("relay_upstream_attempts", "Delivery attempts by whether the upstream "
                                         "took or refused the copy (answered) or not (failed)", ["result"],
                                         registry=self.registry)

    async def watch_loop_lag(self, interval: float = 0.05) -> None:
        """Run for the relay's life, recording how late the loop serves a timer."""
        loop = asyncio.get_running_loop()
        worst = 0.0
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - due)
            self.loop_lag.observe(lag)
            if lag > worst:
                worst = lag
                self.loop_lag_max.set(lag)

    def client_message(self, client: str, reply: str) -> None:
        self.client_messages.labels(client, _REPLY_CLASS.get(reply[:1], "other")).inc()

    def client_recipient(self, client: str, result: str) -> None:
        self.client_recipients.labels(client).inc()

    def client_copy(self, client: str, outcome: str) -> None:
        self.client_copies.labels(client, outcome).inc()

    def upstream_result(self, answered: bool) -> None:
        self.upstream_attempts.labels("answered" if answered else "failed").inc()

    def refused(self, stage: str, rule: str) -> None:
        self.refusals.labels(stage or "pipeline", rule or "unknown").inc()

    def copies_delivered(self, n: int) -> None:
        if n:
            self.copies.inc(n)

    def upstream_tempfail(self) -> None:
        self.upstream_tempfails.inc()

    def feedback_report(self, kind: str) -> None:
        self.feedback_reports.labels(kind).inc()

    def feedback_outcome(self, kind: str, category: str) -> None:
        self.feedback_outcomes.labels(kind, category).inc()

    def feedback_suppressed(self, kind: str) -> None:
        self.feedback_suppressions.labels(kind).inc()

    def webhook_result(self, result: str) -> None:
        self.webhook_posts.labels(result).inc()

    def reply(self, reply: str) -> None:
        self.messages.labels(_REPLY_CLASS.get(reply[:1], "other")).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
