"""Stage content: prohibited content, deceptive links and deceptive headers, matched on what a reader sees.

The rules are data (`filters/content/rules/*.toml`, plus operator and client rule files); the
text they match is the decoded, reader-visible text of the message (`filters/content/textview.py`),
normalised against evasion (NFKC, case, accents, zero-width characters, homoglyphs, leetspeak,
spaced-out letters). Phrases match whole words only, so "Scunthorpe" or "cocktail" never hit.
Per category the operator (and per client) chooses `reject`, `tag` or `off`. See docs/CONTENT.md.
The rule set and its scan are in `filters/content/ruleset.py` (compiled from rule files by
`rulefiles.py`), the settings in `settings.py`; folding, word tokens, phrase matching and the word
index in `folding.py`, `tokens.py`, `phrases.py` and `wordindex.py`; the link and header checks in
`links.py`. This module is the stage, and keeps the names other code imports from `filters.content`.

A check stage never modifies the message: a `tag` hit is recorded in
`ctx.facts["content_tags"]` (a list of `(rule_id, category)` tuples) and the core adds one
`X-Consent-Relay-Content: rule=RULE; category=CATEGORY` header per tag to every copy
(`tag_header_fields(facts)` builds them).
"""
from __future__ import annotations

from typing import Any, Mapping

from filters.content.folding import fold  # noqa: F401
from filters.content.links import (Hit, base_domain, check_headers, check_links, check_operator_text,  # noqa: F401
                                   ip_literal, looks_like_domain, senders, under, _host_of)
from filters.content.phrases import Phrase, Step, first_hits, match  # noqa: F401
from filters.content.rulefiles import _compile_phrase, load_rules, ruleset_for  # noqa: F401
from filters.content.rules import SHORTENERS_FILE, default_rule_files  # noqa: F401
from filters.content import scorer
from filters.content.ruleset import BUILTIN_CATEGORIES, CONTEXT, Rule, RuleError, RuleSet  # noqa: F401
from filters.content.settings import (ACTIONS, Settings, _settings_and_rules, content_settings,  # noqa: F401
                                      validate_table)
from filters.content.textview import reader_view_of
from filters.content.tokens import SEP, _Normaliser  # noqa: F401
from filters.content.wordindex import WordIndex  # noqa: F401
from filters.context import MessageContext
from filters.verdict import CONTINUE, Verdict
from relay.base.offload import cpu_bound

NAME = "content"
DESCRIPTION = ("prohibited content categories, deceptive links and deceptive headers, matched on the "
               "decoded reader-visible text; per category reject, tag or off")
PHASE = "message"

FACTS_KEY = "content_tags"
TAG_HEADER = "X-Consent-Relay-Content"


def text_view(ctx: MessageContext) -> Any:
    """The message's reader view, built once: the campaign fingerprint and promo-guard read the same
    text, and whichever runs first builds it."""
    view = ctx.facts.get("text_view")
    if view is None:
        view = ctx.facts["text_view"] = reader_view_of(ctx.message.headers, ctx.message.body)
    return view


def scan_message(ctx: MessageContext, settings: Settings, rules: RuleSet) -> list[Hit]:
    """Every hit in the message (one per rule), in the order found: headers, links, text."""
    view = text_view(ctx)
    hits: list[Hit] = []
    froms = senders(ctx)
    if settings.action("headers") != "off":
        hits += check_headers(ctx, view.subject, rules, froms)
    public_url = getattr(getattr(ctx.config, "http", None), "public_url", None)
    public_host = (_host_of(public_url) or ("", False))[0] if public_url else None
    if view.image_only and settings.action("images") != "off":
        hits.append(Hit("images.image-only", "images", rules.categories["images"],
                        "images without alt text and next to no text"))
    if view.links:  # link rules of several categories (links, affiliate, gambling.link ...): filtered by action
        hits += [h for h in check_links(view, settings, rules, tuple(ctx.client.sender_domains), public_host)
                 if settings.action(h.category) != "off"]
    visible = visible_blocks(view, froms)
    if settings.action("operator") != "off" and (settings.operator_domains or settings.operator_addresses):
        hits += check_operator_text("\n".join(visible + view.hidden), settings, rules, public_url)
    active = any(settings.action(c) != "off" for c in rules.categories)
    if active:
        found = rules.scan(visible)
        contexts = rules.excusing(found, visible)  # a stance (warning, report ...) unless the message sells

        def counts(rule: Rule) -> bool:
            return (rule.category != CONTEXT and settings.action(rule.category) != "off"
                    and not contexts.intersection(rule.unless))
        for rule, words in found:
            if counts(rule):
                hits.append(Hit(rule.id, rule.category, rules.categories[rule.category], words))
        if view.hidden:
            for rule, words in rules.scan(view.hidden):
                if counts(rule) and all(h.rule_id != rule.id for h in hits):
                    hits.append(Hit(rule.id, rule.category, rules.categories[rule.category],
                                    words + " (hidden text)"))
        if settings.scorer is not None:
            transactional = bool(getattr(ctx.list, "transactional", False))
            hits = scored(hits, judged(ctx, rules, found), settings, rules, transactional)
    return hits


def judged(ctx: MessageContext, rules: RuleSet, found: list[tuple[Rule, str]]) -> tuple[set[str], float] | None:
    """The scorer's features of the message and how likely it is prohibited; None without a model
    or with too few features. A campaign sends the same text in many transactions: what was
    worked out for a subject, text and rule hits seen lately is taken from `scorer.RECENT`."""
    model = scorer.load()
    if model is None:
        return None
    view = text_view(ctx)
    text = scorer.leading_text(view.visible)
    key = (view.subject, text, tuple(rule.id for rule, _ in found))
    known = scorer.RECENT.get(key)
    if known is None:
        feats = message_features(view, text, rules, found)
        known = scorer.RECENT.put(key, (feats, model.prohibited(feats)))
    return known if len(known[0]) >= scorer.MIN_FEATURES else None


def visible_blocks(view: Any, froms: list[tuple[str, str]]) -> list[str]:
    """What a reader sees, as blocks of text: the subject, the visible text, the sender's name."""
    names = " ".join(name for name, _ in froms if name)
    return [view.subject, *view.visible, names]  # (the sender's name last: not read into the subject or text)


def message_features(view: Any, text: str, rules: RuleSet, found: list[tuple[Rule, str]]) -> set[str]:
    """The content scorer's features of a message: the words of `text` (the start of its visible
    text, `scorer.leading_text`) and of its subject (`scorer.features`; links and addresses left
    out: which domain a sender links to says more about the sender than about the offer), and the
    phrase rules and stance contexts it matches, `found` (`r:<rule id>`), so the model learns when
    a rule is right."""
    text = scorer.without_links(text)
    subject = scorer.without_links(view.subject)
    feats = scorer.features(rules.words_of(text)[0], rules.words_of(subject)[0] if subject else "", view.subject,
                            rules.word_sets)
    feats.update("r:" + rule.id for rule, _ in found)
    return feats


def scored(hits: list[Hit], judgement: tuple[set[str], float] | None, settings: Settings, rules: RuleSet,
           transactional: bool = False) -> list[Hit]:
    """The hits with the content scorer's say: when it finds the message very likely legitimate
    (below its veto), the phrase rules of the categories it knows do not count (a warning, a news
    item or an adviser naming what it warns about); when it finds the message prohibited and no
    rule refuses it or names that category, a hit `<category>.scorer` (never `headers` on a
    transactional list, whose account notices may be urgent)."""
    model = scorer.load()
    if model is None or judgement is None:
        return hits
    feats, p = judgement
    if p < model.veto:
        return [h for h in hits if h.category not in model.vetoable]
    if p < (settings.scorer or model.threshold) or any(settings.action(h.category) == "reject" for h in hits):
        return hits
    category = model.category(feats)
    if (category not in rules.categories or settings.action(category) == "off"
            or any(h.category == category for h in hits) or (category == "headers" and transactional)):
        return hits
    words = ", ".join(f"\"{w}\"" for w in model.evidence(feats))
    return hits + [Hit(f"{category}.scorer", category, rules.categories[category], f"scored {p:.2f} on {words}")]


async def check(ctx: MessageContext) -> Verdict:
    settings, rules = _settings_and_rules(ctx.config, ctx.client)
    # in a thread over the relay's BIG (256 KiB), as every stage's work on the body: a 100 KB
    # newsletter is scanned in 3-4 ms on the loop, and the hop to a thread cost another 0.3 ms of
    # CPU on one core and 0.9 ms across two (bench/content_bench.py); a message just under 256 KiB
    # holds the loop for some 8 ms (it was 32 KiB, and loop time was traded for that CPU)
    hits = await cpu_bound(ctx.message.size, scan_message, ctx, settings, rules)
    if not hits:
        return CONTINUE
    refusing = [h for h in hits if settings.action(h.category) == "reject"]
    if refusing:
        first = refusing[0]
        more = len(refusing) - 1
        reason = first.reason() + (f" (and {more} more)" if more else "")
        return Verdict.reject(reason, "content." + first.rule_id)
    tags = ctx.facts.setdefault(FACTS_KEY, [])
    for h in hits:
        if (h.rule_id, h.category) not in tags:
            tags.append((h.rule_id, h.category))
    return CONTINUE


def tag_header_fields(facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The header fields the core adds to every copy for `tag` hits: one per (rule, category)."""
    return [(TAG_HEADER, f"rule={rule}; category={category}") for rule, category in facts.get(FACTS_KEY, [])]
