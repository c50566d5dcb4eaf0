"""DKIM signing checked against dkimpy's verifier, key helpers, password hashing and the key CLI commands."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relay.mail.dkim import DkimSigner, dns_record_line, dns_txt_record, generate_ed25519_key, generate_rsa_key, \
    load_private_key
from relay.crypto.passwords import generate_password, hash_password, verify_password

REPO_ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "acme.example"
SELECTOR = "s1"
ED_SELECTOR = "e1"
NOW = 1_700_000_000
MAX_LINE = 78

BASE_HEADERS = [
    b"From: Acme News <news@acme.example>\r\n",
    b"To: reader@example.org\r\n",
    b"Subject: Spring offers\r\n",
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
    b"Message-ID: <1234@acme.example>\r\n",
    b"MIME-Version: 1.0\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\n",
    b"Content-Transfer-Encoding: 8bit\r\n",
    b"Received: from client by relay; Tue, 14 Nov 2023 22:13:20 +0000\r\n",
    b"X-Mailer: acme-mailer 2\r\n",
]
BASE_H = ["from", "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
          "content-transfer-encoding"]
BASE_BODY = b"Hello reader,\r\n\r\nOur spring offers are here.\r\n"

FOLDED_HEADERS = [
    b"From: Acme News\r\n <news@acme.example>\r\n",
    b"To: one@example.org,\r\n\ttwo@example.org,   \r\n  three@example.org\r\n",
    b"Subject:   A  long subject line that the client\r\n folded\tover two lines  \r\n",
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
]
REPEATED_HEADERS = [
    b"From: news@acme.example\r\n",
    b"To: first@example.org\r\n",
    b"Cc: cc1@example.org\r\n",
    b"To: second@example.org\r\n",
    b"Cc: cc2@example.org\r\n",
    b"Subject: repeated\r\n",
    b"Comments: not signed\r\n",
    b"Comments: not signed either\r\n",
]
LIST_HEADERS = [
    b"From: news@acme.example\r\n",
    b"To: reader@example.org\r\n",
    b"Subject: list mail\r\n",
    b"List-Id: Spring offers <spring.acme.example>\r\n",
    b"List-Unsubscribe: <https://relay.example/u/TOKEN>,\r\n <mailto:unsubscribe+TOKEN@relay.example>\r\n",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
]
WHITESPACE_BODY = b"line  with\t\tinner   space   \r\ntab at end\t\r\n\r\n  indented\r\n\r\n\r\n \r\n\r\n"
UTF8_BODY = "Grüße aus Köln — 10 € off 🙂\r\nÇa va?\r\n".encode()
PASSWORD = "correct horse battery staple"
MALFORMED_HASHES = [
    "",
    "junk",
    "scrypt",
    "scrypt$16384$8$1$c2FsdA==",
    "bcrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
    "scrypt$abc$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
    "scrypt$1000$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
    "scrypt$1073741824$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
    "scrypt$16384$8$1$not base64!$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
    "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$c2hvcnQ=",
    "scrypt$16384$8$1$$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
    "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=$extra",
]
HASH_RE = re.compile(r"^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def dns_for(records: dict[str, str]) -> Callable[..., bytes | None]:
    """A dkimpy dnsfunc serving `records` (selector -> TXT value) under DOMAIN only."""
    by_name = {f"{sel}._domainkey.{DOMAIN}.".encode(): txt.encode() for sel, txt in records.items()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return by_name.get(name)
    return lookup


def sign(signer: DkimSigner, headers: list[bytes], body: bytes) -> bytes:
    return b"".join(signer.sign(headers, body, NOW)) + b"".join(headers) + b"\r\n" + body


def verify(message: bytes, dnsfunc: Callable[..., bytes | None]) -> list[bool]:
    """Result of every DKIM-Signature on `message`, top to bottom (a fresh verifier for each)."""
    count = sum(1 for name, _ in dkimpy.DKIM(message).headers if name.lower() == b"dkim-signature")
    results = []
    for idx in range(count):
        try:
            results.append(bool(dkimpy.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc)))
        except dkimpy.DKIMException:
            results.append(False)
    return results


def tags(field: bytes) -> dict[str, str]:
    """Tag=value pairs of one raw DKIM-Signature field (RFC 6376 §3.2), folding whitespace removed."""
    name, _, value = field.partition(b":")
    assert name.strip().lower() == b"dkim-signature"
    out: dict[str, str] = {}
    for spec in value.decode("ascii").split(";"):
        if not spec.strip():
            continue
        key, _, val = spec.partition("=")
        key = key.strip()
        assert key not in out, f"duplicate tag {key}"
        out[key] = re.sub(r"\s+", "", val) if key in ("b", "bh", "h") else re.sub(r"\s+", " ", val).strip()
    return out


def h_tag(field: bytes) -> list[str]:
    return tags(field)["h"].split(":")


def rsa_dns(key: rsa.RSAPrivateKey) -> Callable[..., bytes | None]:
    return dns_for({SELECTOR: dns_txt_record(key)})


# --- signing ---------------------------------------------------------------------------------------------

def test_rsa_signature_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key).sign(BASE_HEADERS, BASE_BODY, NOW)
    assert len(fields) == 1
    t = tags(fields[0])
    assert (t["v"], t["a"], t["c"], t["d"], t["s"], t["t"]) == \
        ("1", "rsa-sha256", "relaxed/relaxed", DOMAIN, SELECTOR, str(NOW))
    assert "l" not in t
    assert h_tag(fields[0]) == BASE_H
    message = b"".join(fields) + b"".join(BASE_HEADERS) + b"\r\n" + BASE_BODY
    assert verify(message, rsa_dns(rsa_key)) == [True]


def test_signature_field_shape(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> None:
    for field in DkimSigner(DOMAIN, SELECTOR, rsa_key, ed_key).sign(LIST_HEADERS + BASE_HEADERS, BASE_BODY, NOW):
        assert field.startswith(b"DKIM-Signature: v=1;")
        assert field.endswith(b"\r\n") and not field.endswith(b"\r\n\r\n")
        lines = field[:-2].split(b"\r\n")
        assert all(len(line) <= MAX_LINE for line in lines), lines
        assert all(line[:1] == b" " for line in lines[1:])
        assert b"\n" not in field.replace(b"\r\n", b"")


def test_rsa_and_ed25519_both_verify(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> None:
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key, ed_key, ed25519_selector=ED_SELECTOR)
    fields = signer.sign(BASE_HEADERS, BASE_BODY, NOW)
    assert [tags(f)["a"] for f in fields] == ["rsa-sha256", "ed25519-sha256"]
    assert [tags(f)["s"] for f in fields] == [SELECTOR, ED_SELECTOR]
    assert tags(fields[0])["bh"] == tags(fields[1])["bh"]
    message = b"".join(fields) + b"".join(BASE_HEADERS) + b"\r\n" + BASE_BODY
    dns = dns_for({SELECTOR: dns_txt_record(rsa_key), ED_SELECTOR: dns_txt_record(ed_key)})
    assert verify(message, dns) == [True, True]
    assert dkimpy.verify(message, dnsfunc=dns)
    # each signature really depends on its own key: other keys of the same types do not verify it
    others = dns_for({SELECTOR: dns_txt_record(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                      ED_SELECTOR: dns_txt_record(ed25519.Ed25519PrivateKey.generate())})
    assert verify(message, others) == [False, False]


def test_ed25519_uses_the_rsa_selector_by_default(rsa_key: rsa.RSAPrivateKey,
                                                   ed_key: ed25519.Ed25519PrivateKey) -> None:
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key, ed_key).sign(BASE_HEADERS, BASE_BODY, NOW)
    assert [tags(f)["s"] for f in fields] == [SELECTOR, SELECTOR]
    message = b"".join(fields) + b"".join(BASE_HEADERS) + b"\r\n" + BASE_BODY
    # (one DNS name cannot serve both keys; only the ed25519 one is published here)
    assert dkimpy.DKIM(message).verify(idx=1, dnsfunc=dns_for({SELECTOR: dns_txt_record(ed_key)}))


def test_folded_headers(rsa_key: rsa.RSAPrivateKey) -> None:
    message = sign(DkimSigner(DOMAIN, SELECTOR, rsa_key), FOLDED_HEADERS, BASE_BODY)
    assert verify(message, rsa_dns(rsa_key)) == [True]
    # relaxed canonicalization: refolding / respacing in transit keeps the signature valid
    refolded = message.replace(b"A  long subject line that the client\r\n folded\tover",
                               b"A long subject line\r\n\t that the client folded over")
    assert refolded != message
    assert verify(refolded, rsa_dns(rsa_key)) == [True]


def test_repeated_headers_signed_bottom_up(rsa_key: rsa.RSAPrivateKey) -> None:
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key).sign(REPEATED_HEADERS, BASE_BODY, NOW)
    assert h_tag(fields[0]) == ["from", "from", "to", "to", "cc", "cc", "subject"]
    message = b"".join(fields) + b"".join(REPEATED_HEADERS) + b"\r\n" + BASE_BODY
    assert verify(message, rsa_dns(rsa_key)) == [True]
    # the order of the instances is signed: swapping the two To: fields breaks it
    swapped = message.replace(b"To: first@example.org", b"To: XXXXX").replace(
        b"To: second@example.org", b"To: first@example.org").replace(b"To: XXXXX", b"To: second@example.org")
    assert verify(swapped, rsa_dns(rsa_key)) == [False]


def test_body_whitespace_and_trailing_blank_lines(rsa_key: rsa.RSAPrivateKey) -> None:
    message = sign(DkimSigner(DOMAIN, SELECTOR, rsa_key), BASE_HEADERS, WHITESPACE_BODY)
    assert verify(message, rsa_dns(rsa_key)) == [True]
    head = message[:message.index(b"\r\n\r\n") + 4]
    # relaxed body: inner whitespace runs, trailing whitespace and trailing blank lines do not matter
    respaced = b"line with inner space\r\ntab at end\r\n\r\n indented\r\n"
    assert verify(head + respaced, rsa_dns(rsa_key)) == [True]
    # ... but a whitespace that separates words does
    assert verify(head + b"linewith inner space\r\ntab at end\r\n\r\n indented\r\n", rsa_dns(rsa_key)) == [False]


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n", b"no final newline", b"trailing space   "],
                         ids=["empty", "crlf", "blank-lines", "no-crlf", "no-crlf-space"])
def test_edge_bodies(rsa_key: rsa.RSAPrivateKey, body: bytes) -> None:
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key).sign(BASE_HEADERS, body, NOW)
    head = b"".join(fields) + b"".join(BASE_HEADERS) + b"\r\n"
    # SMTP delivers a body that ends with CRLF
    delivered = body if body.endswith(b"\r\n") or not body else body + b"\r\n"
    assert verify(head + delivered, rsa_dns(rsa_key)) == [True]


def test_8bit_utf8_body_and_header(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> None:
    headers = BASE_HEADERS + ["Subject: Grüße — 10 € off\r\n".encode()]
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key, ed_key, ed25519_selector=ED_SELECTOR)
    message = sign(signer, headers, UTF8_BODY)
    dns = dns_for({SELECTOR: dns_txt_record(rsa_key), ED_SELECTOR: dns_txt_record(ed_key)})
    assert verify(message, dns) == [True, True]
    assert verify(message.replace("Köln".encode(), "Koln".encode()), dns) == [False, False]


def test_list_unsubscribe_headers_are_oversigned(rsa_key: rsa.RSAPrivateKey) -> None:
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key).sign(LIST_HEADERS, BASE_BODY, NOW)
    h = h_tag(fields[0])
    assert h == ["from", "from", "to", "subject", "list-id", "list-unsubscribe", "list-unsubscribe",
                 "list-unsubscribe-post", "list-unsubscribe-post"]
    message = b"".join(fields) + b"".join(LIST_HEADERS) + b"\r\n" + BASE_BODY
    assert verify(message, rsa_dns(rsa_key)) == [True]
    # an added List-Unsubscribe (anywhere) is caught by the over-signing
    extra = b"List-Unsubscribe: <https://evil.example/u>\r\n"
    at_end = message.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n", 1)
    assert verify(at_end, rsa_dns(rsa_key)) == [False]


def test_unlisted_headers_are_not_signed(rsa_key: rsa.RSAPrivateKey) -> None:
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key).sign(REPEATED_HEADERS + BASE_HEADERS, BASE_BODY, NOW)
    h = h_tag(fields[0])
    assert "comments" not in h and "received" not in h and "x-mailer" not in h
    assert h.count("from") == 3  # two From fields + the over-sign
    # unsigned fields may change in transit
    message = b"".join(fields) + b"".join(REPEATED_HEADERS + BASE_HEADERS) + b"\r\n" + BASE_BODY
    assert verify(message.replace(b"X-Mailer: acme-mailer 2", b"X-Mailer: other"), rsa_dns(rsa_key)) == [True]


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda m: m.replace(b"spring offers are here", b"spring offers are HERE"), id="body-byte"),
    pytest.param(lambda m: m.replace(b"Subject: Spring offers", b"Subject: Spring offerz"), id="subject"),
    pytest.param(lambda m: m.replace(b"From: Acme", b"From: evil@evil.example\r\nFrom: Acme", 1), id="from-added-above"),
    pytest.param(lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: evil@evil.example\r\n\r\n", 1), id="from-added-below"),
    pytest.param(lambda m: m.replace(b"\r\n\r\n", b"\r\nTo: added@example.org\r\n\r\n", 1), id="to-added-below"),
    pytest.param(lambda m: m.replace(b"Our spring offers are here.\r\n", b""), id="body-line-removed"),
    pytest.param(lambda m: m.replace(b"Date: Tue, 14 Nov", b"Date: Wed, 15 Nov"), id="date"),
])
def test_tampering_breaks_both_signatures(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey,
                                          tamper: Callable[[bytes], bytes]) -> None:
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key, ed_key, ed25519_selector=ED_SELECTOR)
    dns = dns_for({SELECTOR: dns_txt_record(rsa_key), ED_SELECTOR: dns_txt_record(ed_key)})
    message = sign(signer, BASE_HEADERS, BASE_BODY)
    assert verify(message, dns) == [True, True]
    tampered = tamper(message)
    assert tampered != message
    assert verify(tampered, dns) == [False, False]
    assert not dkimpy.verify(tampered, dnsfunc=dns)


def test_one_signer_many_messages(rsa_key: rsa.RSAPrivateKey) -> None:
    """Layouts are cached per signed-name list: interleaved header sets and timestamps all verify."""
    signer = DkimSigner(DOMAIN, SELECTOR, rsa_key)
    cases = [(BASE_HEADERS, NOW), (LIST_HEADERS, NOW), (BASE_HEADERS, 5), (REPEATED_HEADERS, NOW + 1),
             (LIST_HEADERS, 999_999_999), (BASE_HEADERS, NOW)]
    for headers, now in cases:
        fields = signer.sign(headers, BASE_BODY, now)
        assert tags(fields[0])["t"] == str(now)
        message = b"".join(fields) + b"".join(headers) + b"\r\n" + BASE_BODY
        assert verify(message, rsa_dns(rsa_key)) == [True], (headers, now)


def test_odd_header_bytes(rsa_key: rsa.RSAPrivateKey) -> None:
    headers = BASE_HEADERS[1:] + [b"From: nul\x00inside <news@acme.example>\r\n", b"Subject:\t\r\n\t\r\n"]
    fields = DkimSigner(DOMAIN, SELECTOR, rsa_key).sign(headers, BASE_BODY, NOW)
    assert h_tag(fields[0]).count("subject") == 2
    assert verify(b"".join(fields) + b"".join(headers) + b"\r\n" + BASE_BODY, rsa_dns(rsa_key)) == [True]


def test_signer_rejects_bad_arguments(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="selector"):
        DkimSigner(DOMAIN, "bad selector", rsa_key)
    with pytest.raises(ValueError, match="domain"):
        DkimSigner("acme.example; x=1", SELECTOR, rsa_key)
    with pytest.raises(ValueError, match="RSA"):
        DkimSigner(DOMAIN, SELECTOR, ed_key)  # type: ignore[arg-type]


# --- key helpers -----------------------------------------------------------------------------------------

def test_generate_and_load_keys(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    rsa_path = tmp_path / "new" / "dir" / "k.pem"
    ed_path = tmp_path / "new" / "dir" / "k.ed25519.pem"
    made_rsa = generate_rsa_key(rsa_path)
    made_ed = generate_ed25519_key(ed_path)
    for path in (rsa_path, ed_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded_rsa, loaded_ed = load_private_key(rsa_path), load_private_key(ed_path)
    assert isinstance(loaded_rsa, rsa.RSAPrivateKey) and loaded_rsa.key_size == 2048
    assert isinstance(loaded_ed, ed25519.Ed25519PrivateKey)
    assert dns_txt_record(loaded_rsa) == dns_txt_record(made_rsa)
    assert dns_txt_record(loaded_ed) == dns_txt_record(made_ed)
    before = rsa_path.read_bytes()
    with pytest.raises(FileExistsError):
        generate_rsa_key(rsa_path)
    with pytest.raises(FileExistsError):
        generate_ed25519_key(ed_path)
    assert rsa_path.read_bytes() == before


def test_load_private_key_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    for path in (missing, garbage, tmp_path):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load_private_key(path)


def test_dns_records(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> None:
    assert dns_txt_record(rsa_key).startswith("v=DKIM1; k=rsa; p=MII")
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", dns_txt_record(ed_key))
    for key in (rsa_key, ed_key):
        line = dns_record_line(DOMAIN, SELECTOR, key)
        assert line.startswith(f"{SELECTOR}._domainkey.{DOMAIN}. IN TXT ( ") and line.endswith(" )")
        strings = re.findall(r'"([^"]*)"', line)
        assert all(len(s) <= 255 for s in strings)
        assert "".join(strings) == dns_txt_record(key)
    assert len(re.findall(r'"([^"]*)"', dns_record_line(DOMAIN, SELECTOR, rsa_key))) == 3


# --- passwords -------------------------------------------------------------------------------------------

def test_password_hash_roundtrip() -> None:
    encoded = hash_password(PASSWORD)
    assert HASH_RE.match(encoded), encoded
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + " ", encoded)
    assert not verify_password("", encoded)
    assert hash_password(PASSWORD) != encoded  # fresh salt each time


def test_password_non_ascii_and_raw_bytes() -> None:
    assert verify_password("pässwörd €", hash_password("pässwörd €"))
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")  # a Latin-1 password off the wire
    encoded = hash_password(raw)
    assert verify_password(raw, encoded)
    assert not verify_password("café", encoded)
    assert not verify_password("\ud800", encoded)


@pytest.mark.parametrize("encoded", MALFORMED_HASHES)
def test_verify_password_malformed_hash_is_false(encoded: str) -> None:
    assert verify_password(PASSWORD, encoded) is False


def test_generate_password() -> None:
    first, second = generate_password(), generate_password()
    assert first != second and len(first) == 24
    # never an option to a command line (swaks --auth-password "$(cat …)"), never quoting trouble
    assert all(re.fullmatch(r"[A-Za-z0-9]{24}", generate_password()) for _ in range(500))


# --- CLI -------------------------------------------------------------------------------------------------

def run_group(group: str, args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    code = f"from relay.cli.keys import {group}; {group}(prog_name='relay {group}')"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("ed", [False, True], ids=["rsa", "ed25519"])
def test_keygen_command(tmp_path: Path, ed: bool) -> None:
    args = ["keygen", DOMAIN, "--selector", SELECTOR] + (["--ed25519"] if ed else [])
    result = run_group("dkim", args, tmp_path)
    assert result.returncode == 0, result.stderr
    key_path = tmp_path / "keys" / (f"{DOMAIN}.{SELECTOR}.ed25519.pem" if ed else f"{DOMAIN}.{SELECTOR}.pem")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert str(Path("keys") / key_path.name) in result.stdout
    record_line = next(ln for ln in result.stdout.splitlines() if " IN TXT " in ln)
    assert record_line.startswith(f"{SELECTOR}._domainkey.{DOMAIN}. IN TXT (")
    txt = "".join(re.findall(r'"([^"]*)"', record_line))
    assert f"k={'ed25519' if ed else 'rsa'};" in txt

    # the printed record verifies a message signed with the written key
    key = load_private_key(key_path)
    if ed:  # the selector the record is for is the one the config must name
        assert f'ed25519_selector = "{SELECTOR}"' in result.stdout
        signer = DkimSigner(DOMAIN, "rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048),
                            key, ed25519_selector=SELECTOR)  # type: ignore[arg-type]
        assert verify(sign(signer, BASE_HEADERS, BASE_BODY), dns_for({SELECTOR: txt}))[1] is True
    else:
        signer = DkimSigner(DOMAIN, SELECTOR, key)  # type: ignore[arg-type]
        assert verify(sign(signer, BASE_HEADERS, BASE_BODY), dns_for({SELECTOR: txt})) == [True]

    before = key_path.read_bytes()
    again = run_group("dkim", args, tmp_path)
    assert again.returncode == 1
    assert again.stdout == ""
    assert len(again.stderr.strip().splitlines()) == 1
    assert "already exists" in again.stderr and str(Path("keys") / key_path.name) in again.stderr
    assert key_path.read_bytes() == before


def test_keygen_command_out_option_and_bad_selector(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "my.pem"
    result = run_group("dkim", ["keygen", DOMAIN, "--selector", SELECTOR, "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert isinstance(load_private_key(out), rsa.RSAPrivateKey)
    bad = run_group("dkim", ["keygen", DOMAIN, "--selector", "no good"], tmp_path)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "selector" in bad.stderr
    assert not (tmp_path / "keys").exists()


def test_hash_password_command(tmp_path: Path) -> None:
    result = run_group("client", ["hash-password"], tmp_path, stdin=PASSWORD + "\nsecond line ignored\n")
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert HASH_RE.match(encoded)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "\n", encoded)


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"], ids=["eof", "empty-line", "empty-crlf"])
def test_hash_password_command_refuses_empty(tmp_path: Path, stdin: str) -> None:
    result = run_group("client", ["hash-password"], tmp_path, stdin=stdin)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "empty" in result.stderr


@pytest.mark.parametrize("seed", range(40))
def test_chunked_body_hash_equals_the_one_piece_canonicalization(seed):
    import hashlib
    import random

    from relay.mail.dkim import _canon_body, body_hash

    rng = random.Random(seed)
    lines = [rng.choice([b"", b" ", b"\t", b"text", b"a  b", b"tail \t ", b" lead", b"x" * 40])
             for _ in range(rng.randint(0, 60))]
    body = b"\r\n".join(lines) + rng.choice([b"\r\n", b"", b"\r\n\r\n\r\n", b" \r\n\t\r\n"])
    expected = hashlib.sha256(_canon_body(body)).digest()
    for chunk in (1, 3, 16, 1 << 20):  # chunk edges on every kind of line
        assert body_hash(body, chunk=chunk) == expected, (body, chunk)
