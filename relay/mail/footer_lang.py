"""The footer's language: from Content-Language, else guessed from the message text; English by default.

Languages with a translated footer: `LANGUAGES` (templates `footer.LANG.txt.j2` and
`footer.LANG.html.j2`; English is `footer.txt.j2` / `footer.html.j2`) and the reason sentences
below. The guess counts common function words of each language in the first few thousand
characters of the text: a newsletter in German says "und", "die", "der", "nicht" many times, one
in English "the", "and", "you". That needs no model and costs a few microseconds; a message too
short or too mixed to tell gets English, as does any language without a translation.
"""
from __future__ import annotations

import re
from typing import Sequence

DEFAULT = "en"
LANGUAGES = ("en", "de", "fr", "es")
SAMPLE = 4000  # characters of text read for the guess

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
_WORD = re.compile(r"[^\W\d_]+")
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


def guess(text: str, html: bool = False) -> str | None:
    """The language of `text` by its function words; None when it cannot tell."""
    sample = text[:SAMPLE * (3 if html else 1)]
    if html:
        sample = _TAG.sub(" ", sample)
    counts = dict.fromkeys(LANGUAGES, 0)
    for word in _WORD.findall(sample.lower()):
        for lang in _INDEX.get(word, ()):
            counts[lang] += 1
    best = max(counts, key=counts.__getitem__)
    ranked = sorted(counts.values(), reverse=True)
    # a clear lead and enough words to tell: otherwise the default
    if ranked[0] < 5 or ranked[0] < 1.5 * ranked[1]:
        return None
    return best


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
