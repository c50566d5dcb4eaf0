"""A message's body fingerprint: the hash of the reader-visible text without its per-recipient parts."""
from __future__ import annotations

import hashlib
import re
from typing import Any

VIEW_FACT = "text_view"  # the content stage leaves its reader view here, so the text is built once

_URL = re.compile(r"(https?://[^\s/?#<>\"']+)([^\s?#<>\"']*)[^\s<>\"']*", re.I)
_EMAIL = re.compile(r"[^\s<>\"'@]+@[^\s<>\"'@]+\.[a-z]{2,}", re.I)
_SPACE = re.compile(r"\s+")


def normalised_text(ctx: Any) -> str:
    """Subject and visible text, case-folded, whitespace collapsed; addresses and link query strings
    (tracking ids, per-recipient tokens) taken out, so a merged newsletter is one campaign."""
    view = ctx.facts.get(VIEW_FACT)
    if view is None:
        from relay.textview import reader_view_of

        view = reader_view_of(ctx.message.headers, ctx.message.body)
        ctx.facts[VIEW_FACT] = view
    text = "\n".join([view.subject or "", *view.visible]).casefold()
    text = _URL.sub(lambda m: m.group(1) + m.group(2), text)
    text = _EMAIL.sub("@", text)
    return _SPACE.sub(" ", text).strip()


def fingerprint(ctx: Any) -> str:
    return hashlib.sha256(normalised_text(ctx).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def campaign_key(client: str, list_key: str, label: str) -> str:
    """A short stable id for `relay campaign show ID`: client, list and label (X-Campaign-ID or fingerprint)."""
    return hashlib.sha256(f"{client}\0{list_key}\0{label}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
