"""The content stage's C word finder (filters/content/_wordscan.c) gives what its Python path gives."""
from __future__ import annotations

import dataclasses
import random
import re

from filters import content
from filters.content import folding as cfold
from filters.content import tokens as ctok
from filters.content import wordindex as cidx

from test_content_fastpaths import SEPARATORS, WORDS


def test_the_extension_is_built():
    # `pip install` builds it (setup.py); a missing compiler would leave the slower Python path
    assert cidx._wordscan is not None


def test_offsets_equal_the_python_path_on_word_streams():
    rules = content.ruleset_for()
    assert rules.normaliser is not None and rules.index is not None
    index = rules.index
    r = random.Random(5)
    words = sorted(index.words)
    for _ in range(3000):
        blocks = ["".join((r.choice(words) if r.random() < 0.5 else r.choice(WORDS)) + r.choice(SEPARATORS)
                          for _ in range(r.randint(0, 40))) for _ in range(r.randint(1, 3))]
        stream = rules.normaliser.stream(blocks)
        python = cidx._offsets(index.words, index.every, stream)
        assert index.offsets(stream) == python, blocks
        assert list(index.offsets(stream)) == list(python)  # first occurrence order too


def test_offsets_every_or_first_occurrence():
    index = cidx.WordIndex(["buy", "pills", "now", "é"], every=["pills"])
    stream = " buy pills\x1enow  pills buy \t pills "
    found = index.offsets(stream)
    assert found == {"buy": [1], "pills": [5, 16, 28], "now": [11]}
    for word, places in found.items():
        assert all(stream.startswith(word, at) for at in places)
    # a stream that is not ASCII takes the Python path (the C pass returns None for it)
    assert cidx._wordscan.offsets(index._c, " é buy ") is None
    assert index.offsets(" é buy ") == {"é": [1], "buy": [3]}


def test_offsets_on_white_space_as_str_split_sees_it():
    index = cidx.WordIndex(["ab", "c"], every=["ab", "c"])
    r = random.Random(6)
    pieces = ["ab", "c", "abc", "a", " ", "  ", "\t", "\n", "\x1e", "\x1c", "\x0b", "\x0c", "\r", "x"]
    for _ in range(5000):
        stream = "".join(r.choice(pieces) for _ in range(r.randint(0, 20)))
        expected: dict[str, list[int]] = {}
        for m in re.finditer(r"\S+", stream):
            if m.group() in index.words:
                expected.setdefault(m.group(), []).append(m.start())
        assert index.offsets(stream) == expected, repr(stream)


def test_single_run_equals_the_pattern():
    r = random.Random(7)
    for _ in range(20000):
        data = "".join(r.choice(["a", "b", "1", "ab", "12", " ", "  "]) for _ in range(r.randint(0, 16))).encode()
        assert cidx._wordscan.single_run(data) is ctok._single_run_py(data), data


def test_scan_with_and_without_the_extension():
    rules = content.ruleset_for()
    assert rules.index is not None
    python_only = dataclasses.replace(rules, index=cidx.WordIndex(rules.index.words, rules.index.every, native=False))
    assert python_only.index is not None and python_only.index._c is None
    r = random.Random(8)
    phrases = sorted(rules.index.words)
    hits = 0
    for _ in range(1500):
        blocks = ["".join((r.choice(phrases) if r.random() < 0.5 else r.choice(WORDS)) + r.choice(SEPARATORS)
                          for _ in range(r.randint(0, 40))) for _ in range(r.randint(1, 3))]
        native = [(rule.id, words) for rule, words in rules.scan(blocks)]
        assert native == [(rule.id, words) for rule, words in python_only.scan(blocks)], blocks
        hits += bool(native)
    assert hits > 500


def test_leet_runs_equal_the_python_path():
    r = random.Random(9)
    for _ in range(20000):
        classes = "".join(r.choice(["a", "1", "aa", "11", " ", "  "]) for _ in range(r.randint(0, 14))).encode()
        native = cidx._wordscan.leet_runs(classes)
        assert native == ctok._leet_runs_py(classes), classes
        for start, end in zip(native[::2], native[1::2]):
            run = classes[start:end]
            assert b" " not in run and (b"a1" in run or b"1a" in run)


def test_word_text_passes_equal_the_python_path():
    """leet_runs_text and spaced: the classes and the stream made as the bytes are read, in one pass."""
    r = random.Random(10)
    alphabet = ["a", "z", "1", "0", "@", "$", "!", "|", " ", "  ", "\n", "\x1e", ".", "-", "ab", "12", "A", "~", "\x7f"]
    for _ in range(20000):
        data = "".join(r.choice(alphabet) for _ in range(r.randint(0, 16))).encode()
        assert cidx._wordscan.leet_runs_text(data) == ctok._leet_runs_text_py(data), data
        assert cidx._wordscan.spaced(data) == ctok._spaced_py(data), data


def test_distinct_characters_outside_ascii_equal_the_python_path():
    r = random.Random(11)
    alphabet = ["a", " ", "é", "£", "’", "\ud800", "\uffff", "\x80", "\U0001F600", "ı", "\u034f", "abcdefgh"]
    for n in range(20000):
        text = "".join(r.choice(alphabet if n % 4 else alphabet[:2] * 20 + alphabet) for _ in range(r.randint(0, 40)))
        native = cidx._wordscan.non_ascii(text)
        if any(ord(c) > 0xFFFF for c in text):
            assert native is None
        else:
            assert native == cfold._non_ascii_py(text), ascii(text)
        assert cfold._non_ascii(text) == cfold._non_ascii_py(text)


def test_may_hold_url_equals_the_python_path():
    """may_hold_url (whether a URL may be there), on str of each kind."""
    from filters.content import textview_html as th
    r = random.Random(12)
    pieces = ["http", "HTTP", "hTtP", "www.", "WwW.", "ww.", "://", ":/", "/", ":", ".", "w", "h", "t", "p", "W",
              "H", "é", "’", "\U0001F600", " ", "x", "wwww.", "httphttp", "ｈttp", "\u0130"]
    for _ in range(20000):
        text = "".join(r.choice(pieces) for _ in range(r.randint(0, 14)))
        assert cidx._wordscan.may_hold_url(text) is th._may_hold_url_py(text), ascii(text)


def test_hiding_styles_equal_the_python_path():
    """hiding_styles: which styles show what a way of hiding needs, as the joined-and-searched Python path."""
    from filters.content import textview_html as th
    r = random.Random(13)
    pieces = ["display", "DISPLAY", "Display", "none", "NONE", ":", " ", "\t", "\n", "\x0b", "\x0c", "visibility",
              "hidden", "overflow", "mso-hide", "all", "opacity", "0", "1px", "1PX", "font-size", "FONT-SIZE", "1",
              "px", ";", "x", "\u0130", "d\u0130splay", "\u212a", "é", "\U0001F600", "color:red", "height:0"]
    for _ in range(20000):
        styles = ["".join(r.choice(pieces) for _ in range(r.randint(0, 8))) for _ in range(r.randint(0, 4))]
        assert cidx._wordscan.hiding_styles(styles) == th._hiding_styles_py(styles), styles


def test_url_suspect_equals_the_python_path():
    from filters.content import urls as cu
    r = random.Random(14)
    pieces = ["https://", "http://", "www.", "demo.example", "/", "?", "&", "#", "=", "aff", "aff_id", "tag", "hop",
              "utm_source", ".exe", ".js", ".com", "x", "é", "a", ".", "%3a", "http", "ww", "affiliate", "_id",
              "\U0001F600", "?aff=", "&tag="]
    for _ in range(20000):
        low = "".join(r.choice(pieces) for _ in range(r.randint(0, 10))).lower()
        assert cidx._wordscan.url_suspect(low, cu._EXECUTABLE_EXTENSIONS, cu._PARAM_NAMES) is cu.suspect_py(low), low


def test_qp_decode_equals_binascii():
    import binascii
    r = random.Random(16)
    pieces = [b"=", b"=\r\n", b"=\n", b"=\r", b"\r\n", b"\n", b"==", b"=3D", b"=3d", b"=4", b"=G1", b"=A", b"a", b" ",
              b"_", b"=\r x\n", b"=2", b"\xff", b"=ff", b"=FF", b"x=", b"=\t", b"plain text without an equals sign"]
    for _ in range(20000):
        data = b"".join(r.choice(pieces) for _ in range(r.randint(0, 12)))
        assert cidx._wordscan.qp_decode(data) == binascii.a2b_qp(data), data


def test_byte_helpers_equal_bytes_methods():
    r = random.Random(17)
    pieces = [b"<", b"<style", b"<styl", b"style", b"<s", b"a", b"\x00", b"\xff", b"<<", b"e", b"<style>", b"<<<<<<<<<"]
    for _ in range(20000):
        data = b"".join(r.choice(pieces) for _ in range(r.randint(0, 14)))
        for c in (0x3C, 0, 0xFF):
            assert cidx._wordscan.count_byte(data, c) == data.count(bytes([c])), (data, c)
        start = r.randint(-5, len(data) + 2)
        for needle in (b"<style", b"<", b"", b"st"):
            assert cidx._wordscan.find_bytes(data, needle, start) == data.find(needle, start), (data, needle, start)
