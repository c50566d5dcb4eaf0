"""Footer templates checked when the config loads: rendered once with sample data, each must say what SPEC §5 requires.

For every language with a template (`relay.footer_lang.LANGUAGES`) and both kinds of list, the
text and the HTML variant are rendered with sample values; each must hold the postal address, the
contact email and the reason line, and on a marketing list the unsubscribe URL. The HTML variant
must also be visible text when placed in a plain page (`filters.footer_visibility`: no element of it
hidden, nothing it swallows) and carry the unsubscribe URL as a link. The first problem is one
line naming the template file and what is missing (`TemplateProblem`).
"""
from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import jinja2
from selectolax.lexbor import LexborHTMLParser

from filters.footer import (ConsentFacts, FooterValues, _context, _render, load_templates, reason_for,
                            template_names)
from relay.mail.footer_guard import VOID_TAGS, WRAPPER_ATTR, TemplateMarkupError, wrap
from relay.mail.footer_lang import LANGUAGES
from filters.footer_visibility import FooterHidden, place

SAMPLE_PAGE = ("<!DOCTYPE html><html><head><title>sample</title></head><body><p>Sample newsletter text.</p>",
               "</body></html>")


class TemplateProblem(ValueError):
    """A footer template that does not say what it must, or cannot be shown."""


def _samples(lang: str) -> list[FooterValues]:
    consent = ConsentFacts("2026-01-02", "sample signup form", "double", True, "2026-01-03")
    common = dict(company="Sample Company Ltd", contact_email="sample-contact@sample-company.example",
                  postal_address="Sample Company Ltd, 7 Sample Street, 12345 Sampleton, Samplonia")
    return [
        FooterValues(**common, list_name="Sample News", transactional=False,
                     reason=reason_for("Sample News", "Sample Company Ltd", False, consent, lang),
                     unsubscribe_url="https://relay.sample.example/u/sampletoken0123456789",
                     unsubscribe_mailto="unsubscribe+sampletoken0123456789@relay.sample.example", consent=consent),
        FooterValues(**common, list_name="Sample receipts", transactional=True,
                     reason=reason_for("Sample receipts", "Sample Company Ltd", True, None, lang)),
    ]


def _required(values: FooterValues) -> list[tuple[str, str]]:
    needed = [("the postal address", values.postal_address), ("the contact email", values.contact_email),
              ("the reason line", values.reason)]
    if values.unsubscribe_url:
        needed.insert(0, ("the unsubscribe URL", values.unsubscribe_url))
    return needed


def _where(template: jinja2.Template) -> str:
    return template.filename or template.name or "footer template"


def check_templates(dirs: tuple[Path, ...], kinds: frozenset[str] = frozenset({"marketing", "transactional"})) -> None:
    """TemplateProblem naming the first template (file) that fails for a list of these kinds."""
    for d in dirs:
        if not d.is_dir():
            raise TemplateProblem(f"{d} is not a directory")
    for lang in LANGUAGES:
        try:
            text_t, html_t = load_templates(dirs, lang)
        except TemplateMarkupError as exc:
            raise TemplateProblem(f"{template_names(lang)[1]}: {exc}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(f"{exc.filename or exc.name}: line {exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"{template_names(lang)[0]}: {exc}") from None
        for values in _samples(lang):
            kind = "transactional" if values.transactional else "marketing"
            if kind not in kinds:
                continue
            context = _context(values)
            try:
                text = _render(text_t, context)
                html = wrap(_render(html_t, context))
            except jinja2.TemplateError as exc:
                raise TemplateProblem(f"{_where(text_t)} / {_where(html_t)}: does not render: {exc}") from None
            for what, value in _required(values):
                if value not in text:
                    raise TemplateProblem(f"{_where(text_t)}: the {kind} footer lacks {what}")
            _check_html(html_t, html, values, kind)


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")


def _balance(html: str) -> str | None:
    """Why the footer's markup is not balanced (an element left open or one closed it did not open)."""
    stack: list[str] = []
    for slash, name, selfclosing in _TAG.findall(html):
        name = name.lower()
        if name in VOID_TAGS or selfclosing:
            continue
        if not slash:
            stack.append(name)
        elif not stack or stack[-1] != name:
            return f"closes </{name}>, which it did not open"
        else:
            stack.pop()
    return f"leaves <{stack[-1]}> open" if stack else None


def _check_html(template: jinja2.Template, html: str, values: FooterValues, kind: str) -> None:
    where = _where(template)
    unbalanced = _balance(html)
    if unbalanced is not None:
        raise TemplateProblem(f"{where}: the {kind} footer {unbalanced}: it leaves elements open or closes the page's")
    try:
        lead = place(SAMPLE_PAGE[0], SAMPLE_PAGE[1], "", html)
    except FooterHidden as exc:
        raise TemplateProblem(f"{where}: the {kind} footer is not visible: {exc}") from None
    if lead:
        raise TemplateProblem(f"{where}: the {kind} footer leaves elements open or closes the page's")
    tree = LexborHTMLParser("".join((SAMPLE_PAGE[0], html, SAMPLE_PAGE[1])))
    wrapper = tree.css_first(f"div[{WRAPPER_ATTR}]")
    shown = " ".join((wrapper.text(separator=" ") if wrapper is not None else "").split())
    for what, value in _required(values):
        if what == "the unsubscribe URL":
            links = [a.attrs.get("href") for a in (wrapper.css("a[href]") if wrapper is not None else [])]
            if value not in links and html_lib.escape(value) not in links:
                raise TemplateProblem(f"{where}: the {kind} footer lacks the unsubscribe URL as a link (<a href>)")
        elif " ".join(value.split()) not in shown:
            raise TemplateProblem(f"{where}: the {kind} footer lacks {what} as visible text")
