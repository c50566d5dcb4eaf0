"""A message's body fingerprint: the hash of the reader-visible text without its per-recipient parts."""
from __future__ import annotations

import hashlib
import re
from typing import Any

VIEW_FACT = "text_view"  # the content stage leaves its reader view here, so the text is built once

# a link's query string and fragment (tracking ids, per-recipient tokens)
_QUERY = re.compile(r"(https?://[^\s?#]*)[?#]\S*")


def normalised_text(ctx: Any) -> str:
    """Subject and visible text with addresses and link query strings (tracking ids, per-recipient
    tokens) taken out, so a merged newsletter is one campaign."""
    view = ctx.facts.get(VIEW_FACT)
    if view is None:
        from filters.content.textview import reader_view_of

        view = reader_view_of(ctx.message.headers, ctx.message.body)
        ctx.facts[VIEW_FACT] = view
    # no regex over the whole text unless there is something to take out: str methods are C, and a
    # regex pass over 10 KB of text cost 0.2-0.8 ms (bench/accounts_cost.py)
    text = "\n".join([view.subject or "", *view.visible])
    if "@" in text:  # an address ("Hi ann@...", "sent to ..."): the word becomes "@"
        text = " ".join("@" if "@" in word else word for word in text.split())
    if "://" in text and ("?" in text or "#" in text):
        text = _QUERY.sub(r"\1", text)
    return text


def fingerprint(ctx: Any) -> str:
    return hashlib.sha256(normalised_text(ctx).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def campaign_key(client: str, list_key: str, label: str) -> str:
    """A short stable id for `relay campaign show ID`: client, list and label (X-Campaign-ID or fingerprint)."""
    return hashlib.sha256(f"{client}\0{list_key}\0{label}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
