"""The closed verdict vocabulary every stage speaks: continue, accept, reject, tempfail."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    CONTINUE = "continue"   # no objection; the next stage decides
    ACCEPT = "accept"       # accepted; later check stages are skipped for this recipient
    REJECT = "reject"       # permanent refusal (5xx)
    TEMPFAIL = "tempfail"   # try again later (4xx)


@dataclass(frozen=True)
class Verdict:
    """A stage's decision with the reply it implies; `rule` names what decided, for audit."""

    action: Action
    code: int = 250
    status: str = "2.0.0"
    reason: str = ""
    rule: str = ""

    @property
    def refuses(self) -> bool:
        return self.action in (Action.REJECT, Action.TEMPFAIL)

    @classmethod
    def reject(cls, reason: str, rule: str, code: int = 550, status: str = "5.7.1") -> "Verdict":
        if not 500 <= code <= 599 or not status.startswith("5."):
            raise ValueError(f"reject needs a 5xx code and 5.x.x status, got {code} {status}")
        return cls(Action.REJECT, code, status, reason, rule)

    @classmethod
    def tempfail(cls, reason: str, rule: str, code: int = 451, status: str = "4.7.1") -> "Verdict":
        if not 400 <= code <= 499 or not status.startswith("4."):
            raise ValueError(f"tempfail needs a 4xx code and 4.x.x status, got {code} {status}")
        return cls(Action.TEMPFAIL, code, status, reason, rule)

    @classmethod
    def accept(cls, rule: str = "", reason: str = "accepted") -> "Verdict":
        return cls(Action.ACCEPT, 250, "2.0.0", reason, rule)


CONTINUE = Verdict(Action.CONTINUE, reason="no objection")
