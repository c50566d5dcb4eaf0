"""The content stage's URL checks beyond the host: script URLs, look-alike hosts, redirects, affiliate links.

* `links.script-url`: `javascript:`, `vbscript:`, `data:` and `file:` links (a mail client must not
  run or open them; no legitimate newsletter needs one).
* `links.lookalike`: a host whose registrable name looks like a well-known brand's
  (`rules/brands.txt`) or the client's own sender domain but is spelt otherwise, compared
  by TR39 skeleton (filters/content/fuzzy.py): `xn--pypal-4ve.com` (pаypal), `paypa1.com`, `dem0.example`.
  `links.brand-subdomain`: a brand's domain put in front of another (`paypal.com.evil.example`).
* Redirects: a URL that carries another URL (`google.com/url?q=https://...`, `l.facebook.com/l.php?u=`,
  an own-domain `/r?url=https://...`, a bare `?https://...`) is judged by where it leads too, up to
  three hops: the target's host gets every host rule, and its path the executable rule.
* `links.executable`: a link to an executable or script file (.exe, .scr, .msi, .js, .apk ...) off
  the client's own domains (directly or through a redirect).
* `<category>.link`: a host whose name says what it sells (`rules/link-words.txt`:
  `royal-casino.example` is gambling), for the link and for a redirect's target.
* `affiliate.tracking-link`: a host of an affiliate network (`rules/affiliate-hosts.txt`)
  or an affiliate parameter in the query (aff_id=, affid=, hop=, an Amazon associate tag=...-20).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote

from filters.content.fuzzy import skeleton
from filters.content.rules import RULES_DIR

SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")
_SCHEME_CLEAN = re.compile(r"[\x00-\x20]+")
_EMBEDDED = re.compile(r"(?:https?|ftp)(?::|%3a)(?://|%2f%2f)|(?<=[=?;&])www\.", re.I)
_EXECUTABLE = re.compile(r"\.(?:exe|scr|msi|bat|cmd|com|pif|vbs|vbe|js|jse|wsf|wsh|hta|jar|apk|ps1|lnk|dll|cpl|"
                         r"iso|img|dmg|appx|msix|reg)$", re.I)
# (on the lowercased URL: a case-blind regex is several times slower)
_AFFILIATE_PARAMS = re.compile(r"[?&](?:aff|aff_id|affid|affiliate|affiliate_id|aff_sub|a_aid|hop|clickref|"
                               r"irclickid|cjevent|awc|sscid|ranmid|raneaid|ransiteid|afftrack|affiliateid)=")
_AMAZON_TAG = re.compile(r"[?&]tag=[\w.-]+-2[01]\b")


def _lines(name: str) -> list[str]:
    try:
        text = (RULES_DIR / name).read_text("utf-8")
    except OSError:
        return []
    return [line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.lru_cache(maxsize=1)
def brands() -> dict[str, str]:
    """{skeleton of a brand's name: its registrable domain}."""
    return {skeleton(_name(d)): d for d in _lines("brands.txt")}


@functools.lru_cache(maxsize=1)
def affiliate_hosts() -> frozenset[str]:
    return frozenset(_lines("affiliate-hosts.txt"))


@functools.lru_cache(maxsize=1)
def link_words() -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """({word: category} for host parts, ((word, category), ...) for words found inside a part)."""
    whole: dict[str, str] = {}
    for line in _lines("link-words.txt"):
        category, _, words = line.partition(":")
        for word in words.split():
            whole[word] = category.strip()
    inside = tuple((w, c) for w, c in whole.items() if len(w) >= 6)
    return whole, inside


def _name(domain: str) -> str:
    """The name part of a registrable domain: "paypal" of "paypal.com", "barclays" of "barclays.co.uk"."""
    return domain.split(".", 1)[0]


def script_url(url: str) -> bool:
    head = url[:12].lower()
    if head.startswith(("http", "www.", "mailto:")):
        return False
    return _SCHEME_CLEAN.sub("", url[:24]).lower().startswith(SCRIPT_SCHEMES)


def _unicode_host(host: str) -> str:
    if "xn--" not in host:
        return host
    try:
        return host.encode("ascii").decode("idna")
    except UnicodeError:
        return host


def lookalike(host: str, base: Callable[[str], str], own: tuple[str, ...]) -> str | None:
    """The brand or own domain `host` imitates, or None."""
    registrable = base(host)
    name = _name(_unicode_host(registrable))
    if len(name) < 3:
        return None
    shape = skeleton(name)
    candidates = {skeleton(_name(d)): d for d in own}
    for table in (candidates, brands()):
        target = table.get(shape)
        if target is not None and name != _name(target) and registrable != target:
            return target
    return None


def brand_subdomain(host: str, base: Callable[[str], str]) -> str | None:
    """A brand's full domain put in front of another registrable domain (paypal.com.evil.example)."""
    registrable = base(host)
    if host == registrable:
        return None
    front = host[: -len(registrable) - 1]
    for domain in brands().values():
        if front == domain or front.endswith("." + domain):
            return domain
    return None


# a link that may carry another URL, point to an executable or carry an affiliate parameter: C-speed
# finds and two searches whose patterns start with one character the regex engine skips to (most
# links are none of these; the detailed checks run on the rest)
_EXECUTABLE_EXTENSIONS = frozenset("exe scr msi bat cmd com pif vbs vbe js jse wsf wsh hta jar apk ps1 lnk dll cpl iso img "
                                   "dmg appx msix reg".split())
_PARAM_NAMES = frozenset("""aff aff_id affid affiliate affiliate_id aff_sub a_aid hop clickref irclickid cjevent
awc sscid ranmid raneaid ransiteid afftrack affiliateid tag""".split())
_PARAM_IN = re.compile(r"[?&](?:" + "|".join(sorted(_PARAM_NAMES)) + ")=")

try:  # the C helpers (filters/content/_wordscan.c); without them, or built before this one, the Python path
    from filters.content._wordscan import url_suspect as _url_suspect
except ImportError:  # pragma: no cover  (built without a C compiler)
    _url_suspect = None


def suspect(low: str) -> bool:
    """`low` (a lowercased URL) may carry another URL, lead to an executable or carry an affiliate
    parameter (past "https://www.", its own scheme and host). In C when built (one pass a test)."""
    if _url_suspect is not None:
        return _url_suspect(low, _EXECUTABLE_EXTENSIONS, _PARAM_NAMES)
    return suspect_py(low)


def suspect_py(low: str) -> bool:
    """`suspect` in Python (the tests hold the two equal)."""
    if low.find("http", 12) >= 0 or low.find("www.", 12) >= 0:
        return True
    path = low.partition("?")[0].partition("#")[0]
    slash = path.find("/", 8)  # the path after the host ("example.com" is no .com file)
    if slash > 0 and path[path.rfind(".") + 1:] in _EXECUTABLE_EXTENSIONS and path.rfind(".") > slash:
        return True
    return "=" in low and _PARAM_IN.search(low) is not None


def carries_url(low: str) -> bool:
    """A quick test on the lowercased URL: it may carry another (two C finds; most links do not)."""
    return low.find("http", 8) >= 0 or low.find("www.", 12) >= 0


def embedded_urls(url: str, limit: int = 3) -> Iterator[str]:
    """The URLs a redirect URL carries (each hop's target, outermost first)."""
    for _ in range(limit):
        start = url.find("//")
        host_end = url.find("/", start + 2) if start >= 0 else -1
        rest = url[host_end:] if host_end >= 0 else ""
        m = _EMBEDDED.search(rest)
        if m is None:
            return
        value = rest[m.start():]
        if "%" in value[:12]:  # an encoded parameter value: it ends at the next parameter
            value = unquote(unquote(value.split("&", 1)[0]))
        elif "&" in value and "?" not in value:
            value = value.split("&", 1)[0]
        if value.lower().startswith("www."):
            value = "http://" + value
        yield value
        url = value


def affiliate_link(url: str, host: str, under: Callable[[str, frozenset[str]], bool]) -> bool:
    """An affiliate network's host (`host` given), or (`url` given, lowercased) an affiliate parameter."""
    if host and not url:
        return under(host, affiliate_hosts())
    if _AFFILIATE_PARAMS.search(url) is not None:
        return True
    return "amazon." in host and _AMAZON_TAG.search(url) is not None


def executable(url: str) -> bool:
    path = url.split("#", 1)[0].split("?", 1)[0]
    if "." not in path[-6:]:
        return False
    after = path.find("//")
    path = path[path.find("/", after + 2):] if after >= 0 and path.find("/", after + 2) >= 0 else ""
    return bool(path) and _EXECUTABLE.search(path) is not None


def host_category(host: str) -> tuple[str, str] | None:
    """(category, word) when the host's name says what it sells."""
    whole, inside = link_words()
    parts = re.split(r"[.-]", host)
    for part in parts[:-1]:  # not the top-level domain
        if part in whole:
            return whole[part], part
    for part in parts[:-1]:
        for word, category in inside:
            if word in part:
                return category, word
    return None
