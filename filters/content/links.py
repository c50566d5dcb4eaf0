"""The content stage's link and header checks: shorteners, IP hosts, userinfo, mismatched anchors, Re:/display names."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.utils import getaddresses
from typing import TYPE_CHECKING, Iterable

from filters.content.subjects import money_subject, urgent_subject
from filters.content.folding import fold
from filters.content.urls import (affiliate_link, brand_subdomain, carries_url, embedded_urls, executable,
                                  host_category, lookalike, script_url, suspect)
from filters.context import MessageContext
from filters.content.textview import TextView

if TYPE_CHECKING:  # the stage module imports this one
    from filters.content.ruleset import RuleSet
    from filters.content.settings import Settings


@dataclass(frozen=True)
class Hit:
    rule_id: str         # "pharmacy.online-pharmacy"
    category: str        # "pharmacy"
    title: str           # "prescription drugs and online pharmacy"
    evidence: str        # what matched, as normalised text (or the link/header)

    def reason(self) -> str:
        evidence = self.evidence if len(self.evidence) <= 80 else self.evidence[:77] + "..."
        evidence = evidence.replace('"', "'")
        return f'content rule {self.rule_id} ({self.title}): "{evidence}"'


_SHORT_PUBLIC_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz", "co.jp", "ne.jp",
    "or.jp", "com.br", "com.mx", "com.ar", "co.za", "com.cn", "com.tw", "co.kr", "co.in", "com.tr", "com.es",
    "co.il", "com.sg", "com.hk", "gv.at", "co.at"})
_TLDS = frozenset({
    "com", "net", "org", "info", "biz", "io", "co", "app", "dev", "shop", "online", "site", "store", "xyz", "top",
    "club", "me", "tv", "cc", "ly", "gl", "gd", "example", "test", "email", "link", "click", "live", "pro",
    "money", "bank", "finance", "support", "help", "security", "services", "center", "website", "tech", "cloud"})
_DOMAIN_IN_TEXT = re.compile(r"(?<![\w@.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))(?![\w-])")
_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@((?:[a-z0-9-]+\.)+[a-z]{2,24})")
_SHOWN_URL = re.compile(r"^\s*(?:(?:https?|ftp)://)?((?:[a-z0-9-]+\.)+[a-z]{2,24})(?::\d+)?(?:[/?#]\S*)?\s*$")
_SHOWN_URL_ANYWHERE = re.compile(r"(?:https?|ftp)://((?:[a-z0-9-]+\.)+[a-z]{2,24})")
_FILE_EXTENSIONS = frozenset({"pdf", "html", "htm", "jpg", "jpeg", "png", "gif", "doc", "docx", "zip", "php",
                              "aspx", "txt", "csv", "xls", "xlsx", "exe", "js", "css", "py", "md", "svg", "mp4",
                              "mp3", "ppt", "pptx", "json", "xml", "ics"})
_SPACE_DOT = re.compile(r"\s+\.(?=[a-z])")
_REPLY_PREFIX = re.compile(r"^\s*(?:re|fw|fwd|aw|wg|tr|sv|vs|antw|rv|enc|res|odp|vl|r)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]")


def looks_like_domain(name: str) -> bool:
    tld = name.rsplit(".", 1)[-1]
    if tld in _FILE_EXTENSIONS:
        return False
    return len(tld) == 2 or tld in _TLDS


def base_domain(host: str) -> str:
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in _SHORT_PUBLIC_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def under(host: str, domains: Iterable[str]) -> bool:
    """host is one of the domains or a subdomain of one."""
    if isinstance(domains, (set, frozenset)):
        labels = host.split(".")
        return any(".".join(labels[i:]) in domains for i in range(len(labels)))
    return any(host == d or host.endswith("." + d) for d in domains)


_IP_CHARS = re.compile(r"[0-9a-fx.:]+", re.I)


def ip_literal(host: str) -> bool:
    """Dotted, decimal, hex or octal IPv4 hosts and bracketed IPv6 (what browsers resolve as IPs)."""
    host = host.strip("[]")
    if not _IP_CHARS.fullmatch(host):
        return False  # a name: letters beyond hex, or other characters
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    parts = host.split(".")
    if 1 <= len(parts) <= 4 and all(re.fullmatch(r"0x[0-9a-f]+|\d+", p) for p in parts if p) and parts[-1]:
        return True
    return False


_WEB_STARTS = frozenset({"http", "www.", "mail"})  # (the first four characters, lowercased: no script URL)
_NETLOC = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//([^/?#]*)", re.I)


def _host_of(url: str) -> tuple[str, bool] | None:
    """(host, has userinfo) of an http(s)/ftp URL, or None when it is not one."""
    url = url.strip().replace("\\", "/")
    low = url.lower()
    if low.startswith("www."):
        url = "http://" + url
    elif not low.startswith(("http://", "https://", "ftp://", "//")):
        return None
    m = _NETLOC.match(url)
    if m is None:
        return None
    netloc = m.group(1)
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    else:
        host = host.partition(":")[0]
    host = fold(host).rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        pass
    return host, "@" in netloc


def check_links(view: TextView, settings: Settings, rules: RuleSet, own: tuple[str, ...],
                public_host: str | None) -> list[Hit]:
    title = rules.categories["links"]
    op_title = rules.categories["operator"]
    hits: list[Hit] = []
    seen: set[str] = set()
    allowed = own + settings.link_allow + ((public_host,) if public_host else ())

    def hit(rule: str, evidence: str, category: str = "links", ttl: str = title) -> None:
        if f"{category}.{rule}" not in seen:
            seen.add(f"{category}.{rule}")
            hits.append(Hit(f"{category}.{rule}", category, ttl, evidence))

    def host_rules(host: str, evidence: str) -> None:
        """The rules about a host: the link's own, or where a redirect leads."""
        if ip_literal(host):
            hit("ip-host", evidence)
        if under(host, rules.shorteners):
            hit("shortener", evidence)
        if settings.operator_domains and under(host, settings.operator_domains):
            hit("domain", host, "operator", op_title)
        if under(host, allowed):
            return
        imitated = lookalike(host, base_domain, own)
        if imitated:
            hit("lookalike", f"{evidence} looks like {imitated}")
        front = brand_subdomain(host, base_domain)
        if front:
            hit("brand-subdomain", f"{evidence} puts {front} in front")
        sells = host_category(host)
        if sells and sells[0] in rules.categories:
            hit("link", f"{evidence} ({sells[1]})", sells[0], rules.categories[sells[0]])
        if "affiliate" in rules.categories and affiliate_link("", host, under):
            hit("tracking-link", evidence, "affiliate", rules.categories["affiliate"])

    urls: dict[str, tuple[str, bool] | None] = {}  # scheme and authority -> `_host_of` (one site, many links)
    checked: set[str] = set()                       # hosts whose host rules ran: again, they add nothing
    done: set[str] = set()                          # URLs whose URL rules ran: again, only the text can add
    for link in view.links:
        text = link.text
        # a shown URL or domain needs a dot, and folding ASCII text makes none
        shows = link.source == "html" and text and not (text.isascii() and "." not in text)
        if not shows and link.url in done:
            continue
        done.add(link.url)
        url = link.url.strip()
        if url[:7].lower() == "mailto:":
            address = url[7:].split("?", 1)[0].strip().lower()
            if address in settings.operator_addresses or under(address.rpartition("@")[2], settings.operator_domains):
                hit("address", address, "operator", op_title)
            continue
        if url[:4].lower() not in _WEB_STARTS and script_url(url):
            hit("script-url", url[:60])
            continue
        # the host depends on the URL up to the end of its authority: links to one site share it
        end = url.find("/", url.find("//") + 2)
        key = url if end < 0 else url[:end]
        found = urls[key] if key in urls else urls.setdefault(key, _host_of(key))
        if found is None or not found[0]:
            continue
        host, userinfo = found
        if public_host and host == public_host:
            continue  # the relay's own pages (subscription form, unsubscribe)
        if userinfo:
            hit("userinfo", url[:80])
        new_host = host not in checked
        if new_host:
            checked.add(host)
            host_rules(host, host)
        # a redirect is judged by where it leads (filters/content/urls.py)
        lands = host
        low = url.lower()
        odd = suspect(low)  # one search: the few URLs the URL rules need to read closer
        for target in embedded_urls(url) if odd and carries_url(low) else ():
            found_target = _host_of(target)
            if found_target is None or not found_target[0]:
                break
            lands = found_target[0]
            if found_target[1]:
                hit("userinfo", target[:80])
            if lands not in checked:
                checked.add(lands)
                host_rules(lands, f"{host} -> {lands}")
            if executable(target) and not under(lands, allowed):
                hit("executable", f"{host} -> {target[:60]}")
        if odd and executable(url) and not under(host, allowed):
            hit("executable", url[:80])
        if odd and "=" in low and "affiliate" in rules.categories and affiliate_link(low, host, under):
            hit("tracking-link", url[:80], "affiliate", rules.categories["affiliate"])
        if shows:
            shown_text = fold(text)
            m = _SHOWN_URL.match(shown_text) or _SHOWN_URL_ANYWHERE.search(shown_text)
            if m and looks_like_domain(m.group(1)):
                shown = m.group(1)
                if base_domain(shown) != base_domain(lands) and not under(lands, allowed):
                    hit("mismatched-anchor", f"{shown} -> {lands}")
        if new_host and settings.branded_links_only and not under(host, allowed):
            hit("off-brand", host)
    return hits


def check_operator_text(text: str, settings: Settings, rules: RuleSet, public_url: str | None) -> list[Hit]:
    if not settings.operator_domains and not settings.operator_addresses:
        return []
    folded = fold(text)
    if public_url:
        folded = folded.replace(public_url.lower(), " ")
    title = rules.categories["operator"]
    for address in settings.operator_addresses:
        if re.search(r"(?<![\w.+-])" + re.escape(address) + r"(?![\w-])", folded):
            return [Hit("operator.address", "operator", title, address)]
    for domain in settings.operator_domains:
        if re.search(r"(?<![\w-])" + re.escape(domain) + r"(?![\w-])", folded):
            return [Hit("operator.domain", "operator", title, domain)]
    return []


# `Name Of Sender <local@domain>` or `local@domain`, with nothing a parser could read another way
# (one space between words of letters and digits, dot-atoms): what getaddresses gives for it, at a
# tenth of its cost (tests/test_content_fastpaths.py holds the two equal)
_ADDR = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PLAIN_FROM = re.compile(rf"([A-Za-z0-9]+(?: [A-Za-z0-9]+)*) <({_ADDR})>|({_ADDR})")


def senders(ctx: MessageContext) -> list[tuple[str, str]]:
    """(display name, address) of every From address, in order."""
    pairs: list[tuple[str, str]] = []
    for value in ctx.message.values("from"):
        plain = _PLAIN_FROM.fullmatch(value)
        if plain is not None:
            pairs.append((plain.group(1), plain.group(2)) if plain.group(2) else ("", plain.group(3)))
        else:
            pairs += getaddresses([value])
    return pairs


def check_headers(ctx: MessageContext, subject: str, rules: RuleSet,
                  froms: list[tuple[str, str]] | None = None) -> list[Hit]:
    title = rules.categories["headers"]
    hits: list[Hit] = []
    message = ctx.message
    if _REPLY_PREFIX.match(fold(subject)) and not message.has("in-reply-to") and not message.has("references"):
        hits.append(Hit("headers.deceptive-subject", "headers", title,
                        f"Subject {subject[:40]!r} without In-Reply-To or References"))
    mailing = ctx.list
    if not (mailing is not None and getattr(mailing, "transactional", False)) and urgent_subject(subject):
        hits.append(Hit("headers.urgent-subject", "headers", title,
                        f"Subject {subject[:50]!r} threatens an account on a marketing list"))
    if money_subject(subject):
        hits.append(Hit("headers.money-subject", "headers", title, f"Subject {subject[:50]!r} shouts about money"))
    for name, address in senders(ctx) if froms is None else froms:
        if not name:
            continue
        from_domain = address.rpartition("@")[2].lower().rstrip(".")
        # "=?utf-8?q?...?=.com" decodes as "... .com": readers see no space before the dot
        folded = _SPACE_DOT.sub(".", fold(name))
        shown = [m.group(1) for m in _EMAIL_IN_TEXT.finditer(folded)]
        shown += [m.group(1) for m in _DOMAIN_IN_TEXT.finditer(folded) if looks_like_domain(m.group(1))]
        for domain in shown:
            aligned = (under(domain, (from_domain,)) or under(from_domain, (domain,))
                       or under(domain, ctx.client.sender_domains))
            if not aligned:
                hits.append(Hit("headers.display-name", "headers", title,
                                f"From display name shows {domain}, not {from_domain}"))
                return hits
    return hits
