"""Checks of a client's identity at config load: a real-looking postal address and a true contact address.

Postal address (the rule, documented in docs/FOOTER.md): the value is split into parts at commas,
semicolons and line breaks, and needs
  1. a street line: a part with a house number and a word (`1 Main St`, `Hauptstr. 1`,
     `12 rue de la Paix`) or a post office box (`PO Box 12`, `Postfach 10 20`, `BP 42`,
     `Apartado 7`);
  2. a postcode or a city: another part, before the country, holding a word or a postcode;
  3. a country as the last part: a country name (English or its own, from COUNTRIES) or an
     ISO 3166 code written in capitals (`US`, `DEU`).
So `n/a`, `TBD`, `Springfield` or `1 Main St, USA` are refused. No address parser is used: pyap
(the well-kept one) reads US, Canadian and British addresses only, and this relay's clients are
also German, French and Spanish; a rule that can be stated in three lines is predictable.

Contact email: a valid address (email-validator, no DNS) whose domain is one of the client's
sender domains or a subdomain of one; `contact_email_external = true` allows any other domain,
which must then be one mail can reach (no special-use names such as `.invalid` or `.test`).
"""
from __future__ import annotations

import re

import email_validator

COUNTRIES = frozenset(name.strip().lower() for name in """
usa|united states|united states of america|us|u.s.a.|u.s.|uk|united kingdom|great britain|england|scotland|wales|
northern ireland|ireland|éire|germany|deutschland|france|spain|españa|espana|italy|italia|portugal|netherlands|
the netherlands|nederland|holland|belgium|belgique|belgië|luxembourg|switzerland|schweiz|suisse|svizzera|
austria|österreich|oesterreich|denmark|danmark|sweden|sverige|norway|norge|finland|suomi|iceland|ísland|poland|
polska|czech republic|czechia|česko|slovakia|slovensko|hungary|magyarország|romania|românia|bulgaria|greece|
ελλάδα|cyprus|malta|croatia|hrvatska|slovenia|slovenija|serbia|bosnia and herzegovina|montenegro|albania|
north macedonia|estonia|eesti|latvia|latvija|lithuania|lietuva|ukraine|moldova|belarus|russia|turkey|türkiye|
canada|mexico|méxico|brazil|brasil|argentina|chile|colombia|peru|perú|uruguay|paraguay|bolivia|ecuador|
venezuela|costa rica|panama|panamá|guatemala|cuba|dominican republic|puerto rico|jamaica|australia|
new zealand|japan|日本|china|中国|hong kong|taiwan|south korea|korea|india|singapore|malaysia|indonesia|
philippines|thailand|vietnam|viet nam|pakistan|bangladesh|sri lanka|israel|united arab emirates|uae|
saudi arabia|qatar|egypt|morocco|maroc|tunisia|algeria|south africa|nigeria|kenya|ghana|andorra|monaco|
liechtenstein|san marino|georgia|armenia|azerbaijan|kazakhstan""".replace("\n", "").split("|"))
_SPLIT = re.compile(r"[,;\n\r]+")
_PO_BOX = re.compile(r"\b(?:p\.?\s*o\.?\s*box|post\s+office\s+box|postfach|postbus|boîte\s+postale|b\.?\s*p\.?|"
                     r"apartado(?:\s+de\s+correos)?|casilla(?:\s+de\s+correo)?|box)\s*\d+", re.I)
_HAS_WORD = re.compile(r"[^\W\d_]{2,}")
_HAS_NUMBER = re.compile(r"\d")
_POSTCODE = re.compile(r"\b\d{3,}\b|\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b|\b[A-Z]\d[A-Z]\s*\d[A-Z]\d\b")
_CODE = re.compile(r"^[A-Z]{2,3}$")
_COUNTRY_TEXT = re.compile(r"^[^\W\d_][\w .'\-()]*$")


def postal_address_problem(value: str) -> str | None:
    """Why `value` is not a postal address (see the module doc); None when it is one."""
    parts = [p.strip() for p in _SPLIT.split(value or "") if p.strip()]
    if len(parts) < 3:
        return "needs a street line, a postcode or city, and a country, separated by commas"
    country = parts[-1]
    if not (_COUNTRY_TEXT.match(country) and (country.lower().rstrip(".") in COUNTRIES
                                              or country.lower() in COUNTRIES or _CODE.match(country))):
        return f"the last part ({country!r}) is not a country: end with a country name or ISO code"
    street = None
    for i, part in enumerate(parts[:-1]):
        if _PO_BOX.search(part) or (_HAS_NUMBER.search(part) and _HAS_WORD.search(part)
                                     and not _POSTCODE.fullmatch(part.strip())):
            street = i
            break
    if street is None:
        return "has no street line with a house number, nor a PO box"
    if not any(_HAS_WORD.search(p) or _POSTCODE.search(p) for i, p in enumerate(parts[:-1]) if i > street):
        return "has no postcode or city after the street line"
    return None


def contact_email_problem(value: str, sender_domains: tuple[str, ...], external: bool) -> str | None:
    """Why `value` is no valid contact address for these sender domains; None when it is."""
    domain = value.rpartition("@")[2].lower().rstrip(".")
    own = any(domain == d or domain.endswith("." + d) for d in sender_domains)
    try:
        # a sender domain is the operator's own (tests and demos use .test and .example): only an
        # external address must be one the public can reach
        email_validator.validate_email(value, check_deliverability=False, globally_deliverable=not own)
    except email_validator.EmailNotValidError as exc:
        return f"{value!r} is not a valid address: {exc}"
    if not own and not external:
        return (f"{value!r} is not in the client's sender domains ({', '.join(sender_domains)}); "
                f"set contact_email_external = true if that address is really the sender's")
    return None
