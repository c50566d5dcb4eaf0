"""Stage content: each fast path gives exactly what the plain (reference) computation gives."""
from __future__ import annotations

import random

import pytest

from filters import content
from filters.content import links as cl
from filters.content import folding as cfold
from filters.content import phrases as cphr
from filters.content import tokens as ctok
from filters.content import textview as tv
from filters.content import textview_html as th

WORDS = ["viagra", "v1agra", "c@sino", "casino", "online", "pharmacy", "buy", "cheap", "wine", "delivery", "shop",
         "Scunthorpe", "cocktail", "free", "now!", "100mg", "h2o", "10am", "item37", "8f3e2a1b", "$500", "c@$h",
         "a", "b", "s", "1", "2", "p i l l s", "c.a.s.i.n.o", "C-A-S-I-N-O", "0nline", "ph4rmacy", "l0ans",
         "ВИАГРА", "саsino", "ｖｉａｇｒａ", "vi\u200bagra", "café", "e\u0301", "İstanbul", "ı", "ſ", "K", "ß", "ﬁ",
         "出会い", "バイアグラ", "\u3040", "・", "£30", "½", "①", "ⓐ", "\xa0", "·", "©", "—", "’", "`", "\x1e", "я",
         "ΣΑΣ", "ς", "ǅ", "ﾊﾞ", "가", "\u20dd", "\ufeff", "\u034f", "e\u034f\u0301", "ＡＢＣ", "|casino|", "!!", "@@", "1st", "x"]
SEPARATORS = [" ", " ", "\n", ". ", "", "-", ", ", "\xa0", " · ", "!", "@"]


def _text(r: random.Random) -> str:
    return "".join(r.choice(WORDS) + r.choice(SEPARATORS) for _ in range(r.randint(0, 30)))


def _reference_scan(rules: content.RuleSet, blocks: list[str], limit: int = 50) -> list[tuple[str, str]]:
    """The scan as a walk over every token: try each candidate phrase at each of its anchor words."""
    assert rules.normaliser is not None
    tokens = rules.normaliser.tokens(f"\n{ctok.SEP}\n".join(cfold.fold(b) for b in blocks))
    fuzzy = rules.misspellings
    if fuzzy is not None:  # each misspelt rule word read as the rule word (filters/content/fuzzy.py)
        tokens = [(fuzzy.correction(t) or t) if t.isascii() and t.isalpha() and t not in fuzzy.excluded
                  and fuzzy.lo <= len(t) <= fuzzy.hi else t for t in tokens]
    vocabulary = set(tokens)
    candidates = {}
    for word in rules.anchors.keys() & vocabulary:
        entries = [e for e in rules.anchors[word]
                   if all(not words.isdisjoint(vocabulary) for words in rules.literals[id(e[1])])]
        if entries:
            candidates[word] = entries
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, token in enumerate(tokens):
        for offset, steps, rule in candidates.get(token, ()):
            if rule.id in seen or i - offset < 0:
                continue
            end = cphr.match(steps, tokens, i - offset, 0)
            if end is not None:
                seen.add(rule.id)
                found.append((rule.id, cphr.evidence(tokens, i - offset, end)))
                if len(found) >= limit:
                    return found
    return found


def test_word_stream_equals_tokens_of_folded_text():
    rules = content.ruleset_for()
    assert rules.normaliser is not None
    r = random.Random(1)
    for _ in range(3000):
        blocks = [_text(r) for _ in range(r.randint(1, 3))]
        reference = rules.normaliser.tokens(f"\n{ctok.SEP}\n".join(cfold.fold(b) for b in blocks))
        assert rules.normaliser.words(blocks) == reference, blocks


def test_characters_folded_one_at_a_time_fold_as_in_context():
    normaliser = ctok._Normaliser(frozenset({"viagra", "casino"}))
    for lo, hi in cfold._CONTEXT_FREE:
        for code in range(lo, hi + 1):
            ch = chr(code)
            if cfold._own_fold(ch) is None:
                continue
            for text in (f"a{ch}a", f"1{ch} ", f" {ch}e", f"{ch}{ch}"):
                assert normaliser.words([text]) == normaliser.tokens(cfold.fold(text)), repr(text)


def test_scan_equals_a_walk_over_every_word():
    rules = content.ruleset_for()
    phrases = sorted({w for words in rules.literals.values() for step in words for w in step if w.isascii()})
    r = random.Random(2)
    hits = 0
    for _ in range(1500):
        blocks = ["".join((r.choice(phrases) if r.random() < 0.5 else r.choice(WORDS)) + r.choice(SEPARATORS)
                          for _ in range(r.randint(0, 40))) for _ in range(r.randint(1, 3))]
        expected = _reference_scan(rules, blocks)
        assert [(rule.id, words) for rule, words in rules.scan(blocks)] == expected, blocks
        hits += bool(expected)
    assert hits > 500  # the texts do hit rules, so positions, order and evidence are compared


@pytest.mark.parametrize("seed", [3, 4])
def test_text_links_equal_findall(seed):
    r = random.Random(seed)
    pieces = ["http://", "https://", "HTTP://", "www.", "WWW.", "xhttp://a", "_www.b", "é", "&amp;", "<", ">", '"', "'",
              "=", " ", "\n", "\xa0", "\u2003", "a", "x.example/p?q=1", "ſ", ";", ")", ".", "\x1f",
              "httpſ://", "httpS://", "https:/", "wWw.", "\x7f", "\u3000", "ä", "\U0001F600"]
    for _ in range(20000):
        text = "".join(r.choice(pieces) for _ in range(r.randint(0, 14)))
        expected = [url.rstrip(tv._URL_END) for url in tv._TEXT_URL.findall(text)]
        assert [link.url for link in tv._text_links(text)] == expected, text  # (in C when built)
        assert [link.url for link in tv._text_links_py(text)] == expected, text


def test_url_characters_are_those_that_are_not_white_space_controls_or_quotes():
    import re
    as_written = re.compile(r"[^\s<>\"'\x00-\x1f]")
    listed = re.compile(tv._URL_CHARS)
    assert [c for c in range(0x110000) if bool(as_written.match(chr(c))) != bool(listed.match(chr(c)))] == []


def _links_reference(view, settings, rules, own, public_host):
    """check_links as first written: every link's host parsed from its whole URL, every time."""
    from filters.content import urls as cu
    hits, seen = [], set()
    allowed = own + settings.link_allow + ((public_host,) if public_host else ())

    def hit(rule, evidence, category="links"):
        if f"{category}.{rule}" not in seen:
            seen.add(f"{category}.{rule}")
            hits.append(cl.Hit(f"{category}.{rule}", category, rules.categories[category], evidence))

    checked = set()

    def host_rules(host, evidence):
        if cl.ip_literal(host):
            hit("ip-host", evidence)
        if cl.under(host, rules.shorteners):
            hit("shortener", evidence)
        if settings.operator_domains and cl.under(host, settings.operator_domains):
            hit("domain", host, "operator")
        if cl.under(host, allowed):
            return
        if cu.lookalike(host, cl.base_domain, own):
            hit("lookalike", f"{evidence} looks like {cu.lookalike(host, cl.base_domain, own)}")
        if cu.brand_subdomain(host, cl.base_domain):
            hit("brand-subdomain", f"{evidence} puts {cu.brand_subdomain(host, cl.base_domain)} in front")
        sells = cu.host_category(host)
        if sells:
            hit("link", f"{evidence} ({sells[1]})", sells[0])
        if cu.affiliate_link("", host, cl.under):
            hit("tracking-link", evidence, "affiliate")

    for link in view.links:
        url = link.url.strip()
        if url[:7].lower() == "mailto:":
            address = url[7:].split("?", 1)[0].strip().lower()
            domain = address.rpartition("@")[2]
            if address in settings.operator_addresses or cl.under(domain, settings.operator_domains):
                hit("address", address, "operator")
            continue
        if cu.script_url(url):
            hit("script-url", url[:60])
            continue
        found = cl._host_of(url)
        if found is None or not found[0]:
            continue
        host, userinfo = found
        if public_host and host == public_host:
            continue
        if userinfo:
            hit("userinfo", url[:80])
        new_host = host not in checked
        if new_host:
            checked.add(host)
            host_rules(host, host)
        lands = host
        for target in cu.embedded_urls(url):
            t = cl._host_of(target)
            if t is None or not t[0]:
                break
            lands = t[0]
            if t[1]:
                hit("userinfo", target[:80])
            if lands not in checked:
                checked.add(lands)
                host_rules(lands, f"{host} -> {lands}")
            if cu.executable(target) and not cl.under(lands, allowed):
                hit("executable", f"{host} -> {target[:60]}")
        if cu.executable(url) and not cl.under(host, allowed):
            hit("executable", url[:80])
        if cu.affiliate_link(url.lower(), host, cl.under):
            hit("tracking-link", url[:80], "affiliate")
        if link.source == "html" and link.text:
            m = cl._SHOWN_URL.match(cl.fold(link.text)) or cl._SHOWN_URL_ANYWHERE.search(cl.fold(link.text))
            if m and cl.looks_like_domain(m.group(1)):
                if cl.base_domain(m.group(1)) != cl.base_domain(lands) and not cl.under(lands, allowed):
                    hit("mismatched-anchor", f"{m.group(1)} -> {lands}")
        if new_host and settings.branded_links_only and not cl.under(host, allowed):
            hit("off-brand", host)
    return hits


def test_plain_from_fields_read_as_getaddresses_reads_them():
    from email.utils import getaddresses
    r = random.Random(7)
    pieces = ["Demo", "Shop", "news", "@", "demo", ".", "example", " ", "<", ">", "a", "1", "+", "-", "_", "..",
              "  ", "x.y", '"', "(", ")", ",", ";", ":", "\\", "\t", "é", "=?utf-8?q?x?="]
    simple = pieces[:16]  # (values the fast path takes, and values a character away from them)
    plain = 0
    for n in range(20000):
        value = "".join(r.choice(simple if n % 2 else pieces) for _ in range(r.randint(1, 12)))
        m = cl._PLAIN_FROM.fullmatch(value)
        if m is not None:
            plain += 1
            fast = [(m.group(1), m.group(2))] if m.group(2) else [("", m.group(3))]
            assert fast == getaddresses([value]), value
    assert plain > 50


def test_link_checks_by_site_equal_a_check_of_every_link():
    rules = content.ruleset_for()
    r = random.Random(8)
    schemes = ["http://", "https://", "HTTPS://", "ftp://", "//", "", "mailto:", "javascript:", " https://"]
    hosts = ["demo.example", "bit.ly", "192.0.2.1", "3221225994", "paypal.com@evil.example", "[2001:db8::1]",
             "xn--bcher-kva.example", "Bücher.example", "www.bank.com", "abuse@relay-operator.example",
             "relay-operator.example", "sub.demo.example:8080", "demo.example\\evil.example",
             "user:pw@demo.example", "", "www.partner.example"]
    paths = ["", "/", "/a/b?c=1", "?x=/y", "#frag", "/p?u=a%40b&l=1", "\\x"]
    texts = ["", "Shop now", "www.bank.com", "https://paypal.com/login", "demo.example/a", "ВИАГРА.com", "bit.ly"]
    cases = [content.Settings(), content.Settings(branded_links_only=True, link_allow=("youtube.com",)),
             content.Settings(operator_domains=("relay-operator.example",),
                              operator_addresses=("abuse@relay-operator.example",))]
    for n in range(3000):
        view = tv.TextView()
        for _ in range(r.randint(0, 12)):
            url = r.choice(schemes) + r.choice(hosts) + r.choice(paths)
            view.links.append(tv.Link(url, r.choice(texts), r.choice(["html", "text"])))
        view.links += r.sample(view.links, min(len(view.links), r.randint(0, 4)))  # newsletters repeat links
        settings = cases[n % len(cases)]
        own, public = r.choice([((), None), (("demo.example",), None), ((), "demo.example")])
        expected = _links_reference(view, settings, rules, own, public)
        assert cl.check_links(view, settings, rules, own, public) == expected, view.links


# ---------------------------------------------------------------------------------------------
# HTML (filters/content/textview_html.py): the tree operations against a Python walk over every node

_SKIPPED_NAMES = {"script", "style", "head", "title", "template", "noscript", "svg", "xml"}
_BLOCK_NAMES = {"p", "div", "br", "tr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tbody",
                "thead", "tfoot", "blockquote", "section", "article", "header", "footer", "hr", "center", "pre", "dd",
                "dt", "dl", "body", "html", "main", "nav", "aside", "figure", "figcaption", "form", "option", "caption",
                "td", "th"}


def _walk_reference(source: str) -> tuple[str, str, list[tuple[str, str]], str]:
    """html_text spelled out: visible text, hidden text, links and the text outside anchors, by a
    walk over every node of the same lexbor tree (blocks as line breaks, the rest joined)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(source.encode("utf-8", "surrogatepass"))
    visible: list[str] = []
    outside: list[str] = []  # the visible text with each anchor's text as one space
    hidden: list[str] = []
    anchors: list[tuple[str, list[str]]] = []
    areas: list[tuple[str, str]] = []

    def walk(node, out: list[str], open_anchors: list[list[str]], in_hidden: bool) -> None:
        def emit(text: str) -> None:
            out.append(text)
            for buffer in open_anchors:
                buffer.append(text)
            if not in_hidden:
                outside.append(" " if open_anchors else text)

        child = node.first_child
        while child is not None:
            if child.is_text_node:
                emit(child.text_content or "")
            elif child.is_element_node:
                element(child, out, open_anchors, in_hidden, emit)
            child = child.next

    def element(node, out: list[str], open_anchors: list[list[str]], in_hidden: bool, emit) -> None:
        tag = node.tag.lower()
        if tag in _SKIPPED_NAMES:
            return
        if tag == "area":
            href = (node.attrs.get("href") or "").strip()
            if href:
                areas.append((href, node.attrs.get("alt") or ""))
            return
        inner_anchors = open_anchors
        if tag == "a":
            buffer: list[str] = []
            href = (node.attrs.get("href") or "").strip()
            if href:
                anchors.append((href, buffer))
            inner_anchors = open_anchors + [buffer]
            for outer in open_anchors:  # an anchor the parser nested in another one: its edges separate
                outer.append(" ")
        if not in_hidden and th.hides(node):
            if tag == "img":
                alt = node.attrs.get("alt")
                hidden.append(f" {alt} " if alt else "")
            else:
                inner: list[str] = []
                walk(node, inner, inner_anchors[len(open_anchors):], True)  # links in it count, with all its text
                hidden.append("".join(inner))
            return
        if tag == "img":
            alt = node.attrs.get("alt")
            if alt:
                emit(f" {alt} ")
            return
        block = tag in _BLOCK_NAMES
        if block:
            emit("\n")
        walk(node, out, inner_anchors, in_hidden)
        if tag == "a":
            for outer in open_anchors:
                outer.append(" ")
            if not in_hidden and not open_anchors:
                outside.append(" ")
        if block:
            emit("\n")

    root = tree.root
    if root is not None and th.hides(root):
        walk(root, hidden_all := [], [], True)
        return "", "".join(hidden_all), [(h, " ".join("".join(b).split())) for h, b in anchors] + areas, ""
    if root is not None:
        root_wrapper = tree.root.parent
        walk(root_wrapper, visible, [], False)
    return ("".join(visible), "\n".join(hidden), [(h, " ".join("".join(b).split())) for h, b in anchors] + areas,
            "".join(outside))


def _html_document(r: random.Random, depth: int = 0) -> str:
    tags = ["p", "div", "span", "b", "a", "img", "td", "table", "tr", "br", "h2", "font", "li", "ul", "area", "IMG",
            "o:p", "em", "center", "hr", "style", "script", "title", "xml", "svg", "noscript", "template", "head",
            "x-tag", "select", "option", "caption", "wbr", "input"]
    styles = ["display:none", "DISPLAY : NONE", "visibility:hidden", "mso-hide:all", "opacity:0", "opacity:0.5",
              "font-size:0px;", "font-size:1px", "font-size:10px", "font-size:0.8em", "height:0;overflow:hidden",
              "max-height:0px; overflow : hidden", "overflow:hidden;height:0", "height:0", "color:#333",
              "display:&#110;one", "d&#105;splay:none", "text-decoration:none", "dis\u0131ay:none", "font-size:\xa00;"]
    attrs = ['style="{}"', "style='{}'", 'href="https://x.example/?a=1&amp;b=2"', 'alt="{}"', "hidden", 'title="a>b"',
             'href="www.bank.com"', "class=x", 'href="  http://bit.ly/x "', "href", 'alt="a b"']
    out = []
    for _ in range(r.randint(1, 8)):
        k = r.random()
        if k < 0.4 or depth > 3:
            word = r.choice(WORDS + ["www.a.example", "http://b.example/x", "HTTPS://C.example"])
            out.append(word + r.choice(SEPARATORS))
        elif k < 0.9:
            tag = r.choice(tags)
            attr = " ".join(r.choice(attrs).format(r.choice(styles)) for _ in range(r.randint(0, 3)))
            end = r.choice([f"</{tag}>", f"</{tag.upper()} >", ""])
            out.append(f"<{tag} {attr}>{_html_document(r, depth + 1)}{end}")
        else:
            out.append(r.choice(["<!-- c -->", "<3", "< b>", "a<b", "&et", "<!doctype html>", "<!-->", "&amp;",
                                 "&nbsp;", "</p>", "</a>", "<?x?>", "</ x>"]))
    return "".join(out)


def _normal(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("seed", [5, 6])
def test_html_text_equals_a_walk_over_every_node(seed):
    r = random.Random(seed)
    unlinked_checked = 0
    for _ in range(3000):
        source = _html_document(r)
        got = th.html_text(source)
        visible, hidden, links, outside = _walk_reference(source)
        assert _normal(got.visible) == _normal(visible), source
        assert _normal(got.hidden) == _normal(hidden), source
        assert got.anchors == links, source
        expected_urls = [link.url for link in tv._text_links(outside)]
        assert [link.url for link in tv._text_links(got.unlinked or "")] == expected_urls, source
        unlinked_checked += bool(expected_urls)
    assert unlinked_checked > 100  # URLs outside anchors do occur, so the unlinked text is compared


def test_hiding_candidates_by_style_words_equal_a_check_of_every_element():
    from selectolax.lexbor import LexborHTMLParser

    r = random.Random(7)
    found = 0
    for _ in range(3000):
        tree = LexborHTMLParser(_html_document(r).encode("utf-8", "surrogatepass"))
        roots = [node.mem_id for node in th._hidden_roots(tree)]
        reference: list[int] = []
        inside: set[int] = set()
        for node in tree.css("*"):  # every element, in document order: the outermost hidden ones
            if node.mem_id not in inside and th.hides(node):
                reference.append(node.mem_id)
                inside.update(n.mem_id for n in node.css("*"))
        assert roots == reference
        found += bool(reference)
    assert found > 1000


def test_deep_nesting_is_read_in_pieces_in_bounded_time():
    import time

    for source in ("<div>" * 60000 + "buy viagra", "<span>" * 20000 + "</zz>" * 20000 + "buy viagra",
                   "<li><ul>" * 20000 + "buy viagra", "<a><b><i>" * 20000 + "buy viagra"):
        data = source.encode()
        assert th.nesting_work(data) > th.WORK_LIMIT
        start = time.perf_counter()
        text = th.html_text(data)
        assert time.perf_counter() - start < 10  # unbounded, lexbor alone takes minutes on the first
        assert _normal(text.visible).endswith("buy viagra")
    legit = "<table><tr><td><p>Hello <b>reader</b></p></td></tr></table>" * 2000
    assert th.nesting_work(legit.encode()) < th.WORK_LIMIT  # mail as it is written is parsed whole


def test_leet_words_found_by_runs_equal_the_regex():
    """_unleet_words (runs found in C, each word rewritten once) gives what _LEET_WORD.sub gives."""
    normaliser = ctok._Normaliser(frozenset({"viagra", "casino", "loans", "pills"}))
    r = random.Random(15)
    for _ in range(20000):
        text = cfold.fold(_text(r))
        assert normaliser._unleet_words(text) == normaliser._unleet_words_py(text), repr(text)
