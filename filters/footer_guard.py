"""Stage footer-guard: a message whose copies cannot carry a footer a reader sees is refused 554 5.6.0 (SPEC §8).

The rule half of the footer (the `footer` stage is the handler that writes it). Once per message,
before any copy is made, it plans the footer (`relay.mime_footer`), chooses its language
(`relay.footer_lang`), renders the first recipient's footer and checks, after insertion, that it
is visible text of every HTML part (`filters.footer_visibility`). Signed or encrypted bodies,
malformed MIME, a message with no text part a reader sees, and HTML that hides or swallows the
footer are refused, naming why: marketing and transactional lists alike (a transactional footer
carries the sender's identity). The plan, with the end tags the check found necessary, is kept in
`ctx.facts` for the footer stage, so no copy pays for any of this.
"""
from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict

from filters.context import CopyContext, MessageContext
from filters.footer import FIRST_FACT, LANG_FACT, PLAN_FACT, footer_values, render_footer, template_dirs
from filters.verdict import CONTINUE, Verdict
from relay.mail.footer_lang import SAMPLE, language_for
from filters.footer_visibility import FooterHidden, place_in_tree, placed_without_tree
from filters.html_scan import markup
from relay.mail.mime_footer import STRUCTURE_FACT, FooterPlan, plan_footer_explained
from relay.base.offload import cpu_bound

NAME = "footer-guard"
DESCRIPTION = "refuse (554 5.6.0) a message that cannot carry a footer every reader sees"
PHASE = "message"

log = logging.getLogger("relay.footer")
RULE = "footer.not-visible"


def refusal(why: str) -> Verdict:
    return Verdict.reject(f"No visible footer (sender, postal address, unsubscribe link) can be added: {why}; "
                          f"the relay never sends a copy without one", RULE, code=554, status="5.6.0")


def _texts(plan: FooterPlan) -> list[tuple[str, bool]]:
    """Samples of the parts' text for the language guess, plain parts first."""
    out = []
    for slot in sorted(plan.slots, key=lambda s: s.kind != "plain"):
        sample = slot.content_prefix[:SAMPLE * (3 if slot.kind == "html" else 1)]
        out.append((sample.decode(slot.codec.name, "replace"), slot.kind == "html"))
    return out


# Verdicts of the check by (HTML parts, footer markup): a campaign sent one recipient per
# transaction repeats the same body, and the answer depends on nothing else (the footer's values
# are escaped text and URLs; filters.footer_visibility). Per process, bounded.
CACHE_SIZE = 1024
_VERDICTS: "OrderedDict[bytes, tuple[str, ...] | str]" = OrderedDict()


def footer_shape(html_footer: str, urls: tuple[str | None, ...]) -> bytes:
    """The footer's markup: its tags, the copy's own URLs blanked (they differ per recipient)."""
    skeleton = markup(html_footer.encode("utf-8", "surrogatepass"))
    for url in urls:
        if url:
            skeleton = skeleton.replace(url.encode("utf-8", "surrogatepass"), b"\x00")
    return skeleton


def _key(plan: FooterPlan, shape: bytes) -> bytes:
    """A digest of the HTML parts as planned and of the footer's markup (`footer_shape`)."""
    digest = hashlib.blake2b(shape, digest_size=20)
    for slot in plan.slots:
        if slot.kind == "html":
            digest.update(b"\x00%d\x00%d\x00%s\x00" % (len(slot.content_prefix), len(slot.content_suffix),
                                                      slot.lead.encode()))
            digest.update(slot.content_prefix)
            digest.update(slot.content_suffix)
            digest.update(slot.codec.name.encode())
    return digest.digest()


def place_all(plan: FooterPlan, html_footer: str, urls: tuple[str | None, ...] = ()) -> None:
    """Check the footer in every HTML part; keep the end tags each needs before it (FooterHidden)."""
    shape = footer_shape(html_footer, urls)
    slots = [slot for slot in plan.slots if slot.kind == "html"]
    parts = [(slot.content_prefix.decode(slot.codec.name, "surrogateescape"),
              slot.content_suffix.decode(slot.codec.name, "surrogateescape")) for slot in slots]
    told = [placed_without_tree(prefix, suffix, slot.lead, html_footer, shape)
            for slot, (prefix, suffix) in zip(slots, parts)]
    if all(told):
        return  # balanced HTML, told without a tree (most mail): no parse, no digest
    key = _key(plan, shape)
    known = _VERDICTS.get(key)
    if known is not None:
        _VERDICTS.move_to_end(key)
        if isinstance(known, str):
            raise FooterHidden(known)
        for slot, lead in zip(slots, known):
            slot.lead = lead
        return
    try:
        for slot, (prefix, suffix), known_visible in zip(slots, parts, told):
            if not known_visible:  # (a part told without a tree keeps its lead)
                slot.lead = place_in_tree(prefix, suffix, slot.lead, html_footer)
    except FooterHidden as exc:
        _remember(key, str(exc))
        raise
    _remember(key, tuple(slot.lead for slot in slots))


def _remember(key: bytes, verdict: "tuple[str, ...] | str") -> None:
    _VERDICTS[key] = verdict
    if len(_VERDICTS) > CACHE_SIZE:
        _VERDICTS.popitem(last=False)


async def check(ctx: MessageContext) -> Verdict:
    body = ctx.message.body
    plan, why = await cpu_bound(len(body), plan_footer_explained, ctx.message.headers, body,
                                ctx.facts.get(STRUCTURE_FACT))
    ctx.facts[PLAN_FACT] = plan
    if plan is None:
        log.info("queue %s: refused: no footer possible: %s", ctx.queue_id, why)
        return refusal(why)
    lang = language_for(ctx.message.first("content-language"), _texts(plan))
    ctx.facts[LANG_FACT] = lang
    if not plan.needs_html or not ctx.recipients:
        return CONTINUE
    first = CopyContext(ctx.config, ctx.client, ctx.list, ctx.mail_from, ctx.recipients[0], ctx.message,
                        None, ctx.services, ctx.queue_id, ctx.facts)  # type: ignore[arg-type]
    values = footer_values(first, lang)
    _, html = render_footer(values, template_dirs(first), text=False, html=True, lang=lang)
    ctx.facts[FIRST_FACT] = (first.recipient, lang, (ctx.facts.get("consent") or {}).get(first.recipient),
                             values, html)
    try:
        await cpu_bound(len(body), place_all, plan, html, (values.unsubscribe_url, values.unsubscribe_mailto))
    except FooterHidden as exc:
        log.info("queue %s: refused: footer not visible: %s", ctx.queue_id, exc)
        return refusal(str(exc))
    return CONTINUE
