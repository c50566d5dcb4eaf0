"""Run the configured stages in order: rcpt checks, message checks (whole or per recipient), copy transforms."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from filters.context import CopyContext, MessageContext, RcptContext
from filters.registry import Stage, resolve
from filters.verdict import CONTINUE, Action, Verdict

PASSED = Verdict.accept(rule="pipeline.passed", reason="passed every stage")


@dataclass(frozen=True)
class Decision:
    """The final word on one recipient, and which stage said it."""

    recipient: str
    stage: str
    verdict: Verdict

    @property
    def accepted(self) -> bool:
        return not self.verdict.refuses


@dataclass
class MessageDecision:
    decisions: dict[str, Decision]
    # the stages' verdicts along the way, for `relay check` and the audit log
    trail: list[tuple[str, Verdict | Mapping[str, Verdict]]] = field(default_factory=list)

    @property
    def accepted(self) -> list[str]:
        return [r for r, d in self.decisions.items() if d.accepted]

    @property
    def refused(self) -> list[Decision]:
        return [d for d in self.decisions.values() if not d.accepted]


class Pipeline:
    """The stages named in [policy] stages, split by phase, order kept."""

    def __init__(self, stage_names: tuple[str, ...]):
        stages = resolve(stage_names)
        self.rcpt_stages: list[Stage] = [s for s in stages if s.phase == "rcpt"]
        self.message_stages: list[Stage] = [s for s in stages if s.phase == "message"]
        self.copy_stages: list[Stage] = [s for s in stages if s.phase == "copy"]

    async def check_recipient(self, ctx: RcptContext) -> Decision:
        for stage in self.rcpt_stages:
            verdict = await stage.run(ctx)
            if verdict.action is not Action.CONTINUE:
                return Decision(ctx.recipient, stage.name, verdict)
        return Decision(ctx.recipient, "", CONTINUE)

    async def check_message(self, ctx: MessageContext) -> MessageDecision:
        """Each stage sees the recipients still open; a whole-message verdict settles them all."""
        open_rcpts = list(ctx.recipients)
        result = MessageDecision(decisions={})
        seen = ctx
        for stage in self.message_stages:
            if not open_rcpts:
                break
            if len(open_rcpts) != len(seen.recipients):  # recipients only ever drop out
                seen = replace(ctx, recipients=tuple(open_rcpts))  # (dataclasses.replace is not cheap)
            outcome = await stage.run(seen)
            result.trail.append((stage.name, outcome))
            verdicts = outcome if isinstance(outcome, Mapping) else dict.fromkeys(open_rcpts, outcome)
            still_open = []
            for rcpt in open_rcpts:
                verdict = verdicts.get(rcpt, CONTINUE)
                if verdict.action is Action.CONTINUE:
                    still_open.append(rcpt)
                else:
                    result.decisions[rcpt] = Decision(rcpt, stage.name, verdict)
            open_rcpts = still_open
        for rcpt in open_rcpts:
            result.decisions[rcpt] = Decision(rcpt, "", PASSED)
        # keep the envelope's recipient order
        result.decisions = {r: result.decisions[r] for r in ctx.recipients}
        return result

    async def transform(self, ctx: CopyContext) -> None:
        for stage in self.copy_stages:
            await stage.run(ctx)
