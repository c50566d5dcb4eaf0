"""The footer's language: from Content-Language, else guessed from the message text; English by default.

Languages with a translated footer: `LANGUAGES` (templates `footer.LANG.txt.j2` and
`footer.LANG.html.j2`; English is `footer.txt.j2` / `footer.html.j2`) and the reason sentences
below. The guess counts common function words of each language in the first few thousand
characters of the text: a newsletter in German says "und", "die", "der", "nicht" many times, one
in English "the", "and", "you". That needs no model and costs tens of microseconds; a message too
short or too mixed to tell gets English, as does any language without a translation.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

DEFAULT = "en"
LANGUAGES = ("en", "de", "fr", "es")
SAMPLE = 4000  # characters of text read for the guess, at most
_PIECE = 1000  # ... a piece at a time

REASONS = {
    "en": {
        "transactional": "You receive this message because it is about your account or an order with {company}.",
        "subscribed": "You receive {list_name} because this address is subscribed to it.",
        "consent": "You receive {list_name} because you subscribed on {date} via {source} ({how}).",
        "double": "confirmed by email", "single": "single opt-in",
        "unsubscribe": "Unsubscribe from {list_name}", "sent_by": "Sent by",
    },
    "de": {
        "transactional": "Sie erhalten diese Nachricht, weil sie Ihr Konto oder eine Bestellung bei {company} betrifft.",
        "subscribed": "Sie erhalten {list_name}, weil diese Adresse dafür angemeldet ist.",
        "consent": "Sie erhalten {list_name}, weil Sie sich am {date} über {source} angemeldet haben ({how}).",
        "double": "per E-Mail bestätigt", "single": "einfache Anmeldung",
        "unsubscribe": "Von {list_name} abmelden", "sent_by": "Gesendet von",
    },
    "fr": {
        "transactional": "Vous recevez ce message parce qu'il concerne votre compte ou une commande chez {company}.",
        "subscribed": "Vous recevez {list_name} parce que cette adresse y est abonnée.",
        "consent": "Vous recevez {list_name} parce que vous vous êtes abonné le {date} via {source} ({how}).",
        "double": "confirmé par e-mail", "single": "inscription simple",
        "unsubscribe": "Se désabonner de {list_name}", "sent_by": "Envoyé par",
    },
    "es": {
        "transactional": "Recibe este mensaje porque se refiere a su cuenta o a un pedido en {company}.",
        "subscribed": "Recibe {list_name} porque esta dirección está suscrita.",
        "consent": "Recibe {list_name} porque se suscribió el {date} a través de {source} ({how}).",
        "double": "confirmado por correo electrónico", "single": "suscripción simple",
        "unsubscribe": "Darse de baja de {list_name}", "sent_by": "Enviado por",
    },
}

_WORDS = {
    "en": "the and you your for with this are our that from have will not all more is of to in on it be can",
    "de": "und die der das ist nicht sie ihr ihre mit für auf den dem ein eine wir unsere sich auch zu von bei",
    "fr": "le la les et des est une un pour vous votre nos sur dans avec pas que qui du au ce sont plus",
    "es": "el la los las y es una un para con por su sus nuestro nuestra que del al en no más está son lo",
}
_INDEX = {}
for _lang, _words in _WORDS.items():
    for _w in _words.split():
        _INDEX.setdefault(_w, []).append(_lang)
_TAG = re.compile(r"<[^>]*>|&[a-zA-Z#0-9]+;")


def from_header(value: str | None) -> str | None:
    """The first language of a Content-Language value that has a translation (`de-AT, en` → de)."""
    if not value:
        return None
    for tag in value.split(","):
        primary = tag.strip().split("-", 1)[0].split("_", 1)[0].lower()
        if primary in LANGUAGES:
            return primary
    return None


def _tally(seen: Counter[str]) -> dict[str, int]:
    counts = dict.fromkeys(LANGUAGES, 0)
    for word, langs in _INDEX.items():
        n = seen.get(word)
        if n:
            for lang in langs:
                counts[lang] += n
    return counts


def guess(text: str, html: bool = False) -> str | None:
    """The language of `text` by its function words; None when it cannot tell.

    Read a piece at a time, and stop at a lead the rest could hardly undo: most newsletters are
    told by their first thousand characters (this runs once per message, on the hot path)."""
    sample = text[:SAMPLE * (3 if html else 1)]
    if html:
        sample = _TAG.sub(" ", sample)
    seen: Counter[str] = Counter()
    counts = dict.fromkeys(LANGUAGES, 0)
    pos = 0
    while pos < len(sample):
        end = pos + _PIECE
        if end < len(sample):  # cut at a space, so that no word is split between two pieces
            cut = sample.rfind(" ", pos, end)
            end = cut + 1 if cut > pos else end
        # words as split at white space (a function word with a comma after it goes uncounted;
        # enough are left), counted in C: four times faster than a word regex
        seen.update(sample[pos:end].lower().split())
        pos = end
        counts = _tally(seen)
        first, second = sorted(counts.values(), reverse=True)[:2]
        if first >= 20 and first >= 3 * second:
            break
    ranked = sorted(counts.values(), reverse=True)
    # a clear lead and enough words to tell: otherwise the default
    if ranked[0] < 5 or ranked[0] < 1.5 * ranked[1]:
        return None
    return max(counts, key=counts.__getitem__)


def language_for(content_language: str | None, texts: Sequence[tuple[str, bool]]) -> str:
    """Content-Language when it names a translated language, else a guess from the texts
    ((text, is_html) pairs), else English."""
    found = from_header(content_language)
    if found is not None:
        return found
    for text, is_html in texts:
        found = guess(text, is_html)
        if found is not None:
            return found
    return DEFAULT


def phrase(lang: str, key: str, **values: str) -> str:
    table = REASONS.get(lang, REASONS[DEFAULT])
    return table[key].format(**values)
