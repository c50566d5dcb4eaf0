"""Stage promo-guard (after DATA): promotional content on a transactional list is refused.

A `transactional` list skips consent and unsubscribe, so a promotion sent on one would reach people
who never opted in. The rules (`filters/content/rules/promotional/`) are in the content stage's
format and matched on the same normalised reader-visible text.
"""
from __future__ import annotations

from functools import cache

from filters.content import RuleSet, load_rules
from filters.content.rules import RULES_DIR
from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict

NAME = "promo-guard"
DESCRIPTION = "refuse promotional content (discounts, coupon codes, shop-now, sale wording) on transactional lists"
PHASE = "message"
RULE_FILE = RULES_DIR / "promotional" / "promotional.toml"
VIEW_FACT = "text_view"  # the content stage's reader view of the message, when it ran first


@cache
def rules() -> RuleSet:
    return load_rules([RULE_FILE])


def promotional_hits(subject: str, visible: list[str]) -> list[tuple[str, str]]:
    """(rule id, the words that matched) for each promotional rule the text trips."""
    return [(rule.id, words) for rule, words in rules().scan([subject, *visible])]


async def check(ctx: MessageContext) -> Verdict:
    if ctx.list is None or not ctx.list.transactional:
        return CONTINUE
    view = ctx.facts.get(VIEW_FACT)
    if view is None:
        from filters.content.textview import reader_view_of

        view = ctx.facts[VIEW_FACT] = reader_view_of(ctx.message.headers, ctx.message.body)
    hits = promotional_hits(view.subject or "", view.visible)
    if not hits:
        return CONTINUE
    rule, words = hits[0]
    return Verdict.reject(f"promotional content on transactional list {ctx.client.name}/{ctx.list.key} "
                          f"(rule {rule}: \"{words}\"); send promotions on a marketing list", f"promo-guard.{rule}")
