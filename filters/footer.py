"""Stage footer: every copy states who sent it, why the recipient gets it, and how to unsubscribe.

The footer is rendered from `footer_templates/footer.txt.j2` and `footer.html.j2` (a client's
`footer_templates` directory overrides either by holding a template of the same name) and put
into every text part a reader sees by `relay.mime_footer` (SPEC §5). The MIME plan is made once
per message and kept in `ctx.facts["footer_plan"]`; per copy only the footer is rendered,
encoded and spliced in. A message that cannot carry a visible footer (signed, encrypted,
malformed, HTML that hides or swallows it) never gets here: the `footer-guard` stage refuses it
(`filters/footer_guard.py`). A list's `footer_templates` directory comes before its client's; the
footer speaks the message's language (`relay.footer_lang`) where a translated template exists.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jinja2

from filters.context import CopyContext
from relay.mail.footer_guard import GuardExtension, wrap
from relay.mail.footer_lang import DEFAULT as DEFAULT_LANG, phrase
from relay.mail.mime_footer import STRUCTURE_FACT, FooterPlan, plan_footer_explained
from relay.base.offload import cpu_bound
from filters.links import unsubscribe_links

NAME = "footer"
DESCRIPTION = "add the sender, the reason for receiving and the unsubscribe link to every text part a reader sees"
PHASE = "copy"

log = logging.getLogger("relay.footer")
TEXT_TEMPLATE = "footer.txt.j2"
HTML_TEMPLATE = "footer.html.j2"
PLAN_FACT = "footer_plan"
LANG_FACT = "footer_lang"  # the message's footer language, chosen once (filters/footer_guard.py)
# the first recipient's footer as footer-guard rendered it to check it: (recipient, language, the
# consent record it was rendered with, values, HTML); that copy's footer stage renders no HTML again
FIRST_FACT = "footer_first"
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MAX_VALUE = 500  # a footer line, not a document


@dataclass(frozen=True)
class ConsentFacts:
    """What the footer says about how the recipient subscribed."""

    signed_up_on: str        # YYYY-MM-DD
    source: str
    method: str              # single | double
    confirmed: bool          # double opt-in with a confirmation time
    confirmed_on: str | None


@dataclass(frozen=True)
class FooterValues:
    """Everything a footer template sees. `reason` is the ready-made sentence."""

    company: str
    contact_email: str
    postal_address: str
    list_name: str
    transactional: bool
    reason: str
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    consent: ConsentFacts | None = None


_FIELD_NAMES = tuple(f.name for f in fields(FooterValues))


def clean(value: Any) -> str:
    """One line: CR, LF, NUL, other controls and Unicode line separators become one space."""
    text = value if isinstance(value, str) else str(value)
    if not text.isprintable():  # the common case (printable already) skips the regex
        text = _CONTROLS.sub(" ", text)
    return text.strip()[:_MAX_VALUE]


def _context(values: FooterValues) -> dict[str, Any]:
    """The template context: every string value made one line."""
    context: dict[str, Any] = {}
    for name in _FIELD_NAMES:
        value = getattr(values, name)
        context[name] = clean(value) if isinstance(value, str) else value
    c = values.consent
    if c is not None:
        context["consent"] = ConsentFacts(clean(c.signed_up_on), clean(c.source), clean(c.method), c.confirmed,
                                          clean(c.confirmed_on) if c.confirmed_on else None)
    return context


def reason_for(list_name: str, company: str, transactional: bool, consent: ConsentFacts | None,
               lang: str = DEFAULT_LANG) -> str:
    if transactional:
        return phrase(lang, "transactional", company=company)
    if consent is None:
        return phrase(lang, "subscribed", list_name=list_name)
    # "confirmed" alone would contradict `relay consent show`, whose status of a single opt-in
    # subscriber is also confirmed (the consent counts); the footer says which kind it is
    how = phrase(lang, "double" if consent.confirmed else "single")
    return phrase(lang, "consent", list_name=list_name, date=consent.signed_up_on, source=consent.source, how=how)


def template_dirs(ctx: CopyContext) -> tuple[Path, ...]:
    """The override directories of a copy: its list's, then its client's."""
    list_dir = getattr(ctx.list, "footer_templates", None)
    return tuple(d for d in (list_dir, ctx.client.footer_templates) if d is not None)


def footer_values(ctx: CopyContext, lang: str = DEFAULT_LANG) -> FooterValues:
    client, mailing = ctx.client, ctx.list
    transactional = mailing is not None and mailing.transactional
    list_name = mailing.name if mailing is not None else client.company
    consent = None
    record = (ctx.facts.get("consent") or {}).get(ctx.recipient)
    if record is not None and not transactional:
        consent = ConsentFacts(
            signed_up_on=record.signed_up_at.date().isoformat(), source=record.source or "an unnamed source",
            method=record.method, confirmed=record.method == "double" and record.confirmed_at is not None,
            confirmed_on=record.confirmed_at.date().isoformat() if record.confirmed_at else None)
    url = mailto = None
    if not transactional:  # transactional lists have no unsubscribe (SPEC §2)
        links = unsubscribe_links(ctx)
        url, mailto = links.url, links.mailto
    return FooterValues(
        company=client.company, contact_email=client.contact_email, postal_address=client.postal_address,
        list_name=list_name, transactional=transactional,
        reason=reason_for(clean(list_name), clean(client.company), transactional, consent, lang),
        unsubscribe_url=url, unsubscribe_mailto=mailto, consent=consent)


# -- templates ---------------------------------------------------------------------------

_TEMPLATES: dict[tuple[tuple[Path, ...], str], tuple[jinja2.Template, jinja2.Template]] = {}


def _dirs(template_dir: Path | tuple[Path, ...] | None) -> tuple[Path, ...]:
    if template_dir is None:
        return ()
    return (template_dir,) if isinstance(template_dir, Path) else tuple(template_dir)


def _environment(dirs: tuple[Path, ...]) -> jinja2.Environment:
    package = jinja2.PackageLoader("footer_templates", ".")
    loader: jinja2.BaseLoader = package
    if dirs:
        loader = jinja2.ChoiceLoader([*(jinja2.FileSystemLoader(str(d)) for d in dirs), package])
    # GuardExtension puts the !important styles that keep it visible on every tag of an HTML footer
    return jinja2.Environment(
        loader=loader, extensions=[GuardExtension],
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        trim_blocks=True, lstrip_blocks=True, auto_reload=False, keep_trailing_newline=False)


def template_names(lang: str) -> tuple[str, str]:
    """(text, HTML) template names of a language: English is footer.txt.j2, German footer.de.txt.j2."""
    if lang == DEFAULT_LANG:
        return TEXT_TEMPLATE, HTML_TEMPLATE
    return f"footer.{lang}.txt.j2", f"footer.{lang}.html.j2"


def load_templates(dirs: tuple[Path, ...], lang: str = DEFAULT_LANG) -> tuple[jinja2.Template, jinja2.Template]:
    """Compile the (text, HTML) templates of a language, raising what Jinja or the guard raise;
    a language without a template of its own falls back to English."""
    env = _environment(dirs)
    text_name, html_name = template_names(lang)
    try:
        return env.get_template(text_name), env.get_template(html_name)
    except jinja2.TemplateNotFound:
        if lang == DEFAULT_LANG:
            raise
        return env.get_template(TEXT_TEMPLATE), env.get_template(HTML_TEMPLATE)


def templates(template_dir: Path | tuple[Path, ...] | None,
              lang: str = DEFAULT_LANG) -> tuple[jinja2.Template, jinja2.Template]:
    """(text, HTML) templates for override directories and a language, compiled once each."""
    dirs = _dirs(template_dir)
    key = (dirs, lang)
    found = _TEMPLATES.get(key)
    if found is None:
        try:
            found = load_templates(dirs, lang)
        except (jinja2.TemplateError, ValueError):
            if not dirs:
                raise
            # (config loading refuses broken templates; this is a file changed since)
            log.exception("footer templates in %s are broken; using the defaults", ", ".join(map(str, dirs)))
            found = templates(None, lang)
        _TEMPLATES[key] = found
    return found


def _lines(rendered: str) -> str:
    """Trailing spaces off, no blank lines at either end; lines joined by '\\n'."""
    lines = [line.rstrip() for line in rendered.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _render(template: jinja2.Template, values: dict[str, Any]) -> str:
    return _lines(template.render(values))


def render_footer(values: FooterValues, template_dir: Path | tuple[Path, ...] | None = None,
                  text: bool = True, html: bool = True, lang: str = DEFAULT_LANG) -> tuple[str, str]:
    """(text footer, HTML footer in its guarded wrapper), lines joined by '\\n'. Every value is
    made one line first."""
    context = _context(values)
    text_t, html_t = templates(template_dir, lang)
    try:
        return (_render(text_t, context) if text else "", wrap(_render(html_t, context)) if html else "")
    except jinja2.TemplateError:
        if not _dirs(template_dir):
            raise
        log.exception("footer templates in %s failed to render; using the defaults", template_dir)
        default_text, default_html = templates(None, lang)
        return (_render(default_text, context) if text else "",
                wrap(_render(default_html, context)) if html else "")


# -- the stage ---------------------------------------------------------------------------

def plan_for(ctx: CopyContext) -> FooterPlan | None:
    """The message's footer plan, made on the first copy and shared by the others."""
    if ctx.copy.body is not ctx.message.body and ctx.copy.body != ctx.message.body:
        # an earlier stage changed this copy's body: plan for what it is now
        return plan_footer_explained(ctx.message.headers, ctx.copy.body)[0]
    if PLAN_FACT not in ctx.facts:
        plan, why = plan_footer_explained(ctx.message.headers, ctx.message.body, ctx.facts.get(STRUCTURE_FACT))
        ctx.facts[PLAN_FACT] = plan
        if plan is None:
            # only without the footer-guard stage (a [policy] stages list that leaves it out)
            log.warning("queue %s: no footer: %s", ctx.queue_id, why)
    return ctx.facts[PLAN_FACT]


async def apply(ctx: CopyContext) -> None:
    # scanning and re-assembling a big body are MIME work for a thread, not the event loop
    plan = await cpu_bound(len(ctx.copy.body), plan_for, ctx)
    if plan is None:
        return
    lang = ctx.facts.get(LANG_FACT, DEFAULT_LANG)
    first = ctx.facts.get(FIRST_FACT)
    if (first is not None and plan.needs_html and first[0] == ctx.recipient and first[1] == lang
            and first[2] is (ctx.facts.get("consent") or {}).get(ctx.recipient)):
        values, html = first[3], first[4]
        text = render_footer(values, template_dirs(ctx), text=plan.needs_text, html=False, lang=lang)[0]
    else:
        text, html = render_footer(footer_values(ctx, lang), template_dirs(ctx),
                                   text=plan.needs_text, html=plan.needs_html, lang=lang)
    result = await cpu_bound(len(ctx.copy.body), plan.apply, text, html)
    ctx.copy.body = result.body
    if result.top_level_cte is not None:
        ctx.copy.replace("Content-Transfer-Encoding", result.top_level_cte)
