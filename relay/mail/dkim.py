"""Fast DKIM signing (RFC 6376 relaxed/relaxed, rsa-sha256 and RFC 8463 ed25519-sha256) on OpenSSL, plus key helpers."""
from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from relay.base.offload import BIG, line_pieces

__all__ = [
    "SIGNED_HEADERS", "OVERSIGNED_HEADERS", "DkimSigner", "BodyHasher", "body_hash", "canon_lines",
    "load_private_key", "generate_rsa_key", "generate_ed25519_key", "dns_txt_record", "dns_record_line",
    "validate_name",
]

#: Header fields signed when present, in the order they appear in h=.
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"sender",
    b"mime-version", b"content-type", b"content-transfer-encoding", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"list-post", b"list-help",
    b"in-reply-to", b"references", b"feedback-id",
)
#: Listed once more than they occur so no instance can be added (from: always; the others when present).
OVERSIGNED_HEADERS: frozenset[bytes] = frozenset({b"from", b"list-unsubscribe", b"list-unsubscribe-post"})
_ALWAYS_OVERSIGNED = b"from"
_SIGNED_SET = frozenset(SIGNED_HEADERS)

_MAX_LINE = 78
_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*$")
_TXT_CHUNK = 255
_T_MARK = b"\x01"  # placeholders for t= and bh= in cached layouts (never in validated names)
_BH_MARK = b"\x02"
_BH_LEN = 44  # base64 of a SHA-256 digest

DkimPrivateKey = RSAPrivateKey | Ed25519PrivateKey


def validate_name(value: str, what: str = "domain") -> str:
    """Return `value` if it is a plain ASCII DNS name usable as a DKIM d= domain or s= selector, else raise ValueError."""
    if not value or len(value) > 253 or not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid DKIM {what} (ASCII letters, digits, '-', '_' and dots)")
    return value


def body_hash(body: bytes, chunk: int = BIG) -> bytes:
    """SHA-256 of the relaxed canonical body; a big body is canonicalized a line-aligned chunk at a time.

    Each replace() holds the GIL: over 25 MB at once, the signing thread would stall the event
    loop for tens of milliseconds. Chunks end at a CRLF, so no WSP run or trailing space is
    split (BodyHasher). A chunk with a bare CR or LF (the relay never signs one) sends the whole
    body down the one-piece path.
    """
    if len(body) <= chunk:
        return hashlib.sha256(_canon_body(body)).digest()
    hasher = BodyHasher()
    for piece in line_pieces(body, chunk):
        if not hasher.feed(piece):
            return hashlib.sha256(_canon_body(body)).digest()
    return hasher.digest()


class BodyHasher:
    """The relaxed body hash fed line-aligned pieces in order (each ends with CRLF but the last).

    Relaxed canonicalization is line-local, so the pieces are canonicalized one by one; empty
    lines at a piece's end are held back until content follows (RFC 6376 §3.4.4: trailing empty
    lines do not count). `copy()` forks the state: fan-out feeds the part every copy shares once
    (relay/mail/dkim_fanout.py).
    """

    __slots__ = ("sha", "held")

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.held = 0  # bytes of empty lines (CRLFs) not hashed yet

    def copy(self) -> "BodyHasher":
        other = BodyHasher.__new__(BodyHasher)
        other.sha, other.held = self.sha.copy(), self.held
        return other

    def feed(self, piece: bytes) -> bool:
        """Canonicalize and hash `piece`; False (nothing hashed) if it holds a bare CR or LF."""
        if not piece:
            return True
        pairs = piece.count(b"\r\n")
        if piece.count(b"\r") != pairs or piece.count(b"\n") != pairs:
            return False
        self.feed_canonical(canon_lines(piece if piece.endswith(b"\r\n") else piece + b"\r\n"))
        return True

    def feed_canonical(self, canon: bytes) -> None:
        """Hash lines already canonicalized by canon_lines()."""
        core = canon.rstrip(b"\r\n")
        if core:
            sha = self.sha
            if self.held:
                sha.update(b"\r\n" * (self.held // 2))
            sha.update(core)
            sha.update(b"\r\n")
            self.held = len(canon) - len(core) - 2
        else:
            self.held += len(canon)

    def digest(self) -> bytes:
        return self.sha.digest()


def canon_lines(lines: bytes) -> bytes:
    """Relaxed canonical form of whole CRLF-ended lines without bare CR/LF, every line kept."""
    lines = _squeeze_wsp(lines)
    if b" \r\n" in lines:  # after squeezing, trailing whitespace is at most one SP
        lines = lines.replace(b" \r\n", b"\r\n")
    return lines


def _canon_header_value(value: bytes) -> bytes:
    """Relaxed value (RFC 6376 §3.4.2): unfold, squeeze WSP runs to one space, trim WSP at both ends."""
    return _squeeze_wsp(value.replace(b"\r\n", b"")).strip(b" ")


def _squeeze_wsp(data: bytes) -> bytes:
    """Every run of SP/HTAB becomes one SP; bytes.replace runs in C, ~15x faster than a regex here."""
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    while b"  " in data:  # each pass halves every run, so log2(longest run) passes
        data = data.replace(b"  ", b" ")
    return data


def _canon_body(body: bytes) -> bytes:
    """Relaxed body (RFC 6376 §3.4.4, RFC 8301 errata): an empty canonical body is the empty string."""
    if not body:
        return b""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"  # what SMTP transport delivers anyway
    body = _squeeze_wsp(body)
    if b" \r\n" in body:  # after squeezing, trailing whitespace is at most one SP
        body = body.replace(b" \r\n", b"\r\n")
    core = body.rstrip(b"\r\n")
    tail = body[len(core):]
    if tail == b"\r\n" * (len(tail) // 2):  # usual case: only whole CRLF pairs were stripped
        return core + b"\r\n" if core else b""
    # odd tail (bare CR/LF before the last CRLF): drop whole empty lines only
    end = len(body)
    while body.endswith(b"\r\n\r\n", 0, end):
        end -= 2
    return body[:end]


def _canon_headers(names: list[bytes], values: list[bytes], cache: dict[bytes, bytes] | None = None) -> bytes:
    """'name:value\\r\\n' for each pair, relaxed; the values are canonicalized in one batch of C-level passes.

    `cache` (raw value -> canonical value) is shared by the copies of one message: the fields
    every copy has alike are canonicalized once, and only the values not in it are worked out.
    """
    if cache is not None:
        missing = [v for v in values if v not in cache]
        if missing:
            found = dict(zip(missing, _canon_values(missing), strict=True))
            if len(cache) < _CANON_CACHE_MAX:  # the first copy fills it; per-recipient values then stay out
                cache.update(found)
            canon = [found[v] if v in found else cache[v] for v in values]
        else:
            canon = [cache[v] for v in values]
        return b"".join([n + b":" + v + b"\r\n" for n, v in zip(names, canon, strict=True)])
    return b"".join([n + b":" + v + b"\r\n" for n, v in zip(names, _canon_values(values), strict=True)])


_CANON_CACHE_MAX = 64


def _canon_values(values: list[bytes]) -> list[bytes]:
    """Relaxed header values, in one batch of C-level passes."""
    joined = b"\x00".join(values)
    if joined.count(b"\x00") != len(values) - 1:  # a NUL inside a value: do them one by one
        canon = [_canon_header_value(v) for v in values]
    else:
        canon = _squeeze_wsp(joined.replace(b"\r\n", b"")).split(b"\x00")
    return [v.strip(b" ") for v in canon]


class _Layout(NamedTuple):
    raw_a: bytes
    raw_b: bytes
    raw_c: bytes
    canon_a: bytes
    canon_b: bytes
    canon_c: bytes


def _split_marks(data: bytes, t_len: int) -> tuple[bytes, bytes, bytes]:
    i = data.index(_T_MARK)
    j = data.index(_BH_MARK)
    return data[:i], data[i + t_len:j], data[j + _BH_LEN:]


def _fold(prefix: bytes, atoms: list[tuple[bytes, bool]]) -> bytes:
    """Join atoms onto `prefix`, folding with CRLF SP before an atom that would pass _MAX_LINE; bool = space before it."""
    lines: list[bytes] = []
    line = prefix
    for atom, spaced in atoms:
        sep = b" " if spaced else b""
        if len(line) + len(sep) + len(atom) > _MAX_LINE and line.strip():
            lines.append(line)
            line = b" " + atom
        else:
            line += sep + atom
    lines.append(line)
    return b"\r\n".join(lines)


class DkimSigner:
    """Signs one sender domain's messages: rsa-sha256, then ed25519-sha256 when an ed25519 key is set."""

    def __init__(self, domain: str, selector: str, rsa_key: RSAPrivateKey,
                 ed25519_key: Ed25519PrivateKey | None = None, ed25519_selector: str | None = None) -> None:
        if not isinstance(rsa_key, RSAPrivateKey):
            raise ValueError("DkimSigner needs an RSA private key for rsa-sha256")
        if rsa_key.key_size < 1024:
            raise ValueError(f"RSA DKIM key of {rsa_key.key_size} bits is too small (RFC 8301: at least 1024, use 2048)")
        if ed25519_key is not None and not isinstance(ed25519_key, Ed25519PrivateKey):
            raise ValueError("ed25519_key must be an Ed25519 private key")
        self.domain = validate_name(domain.rstrip(".").lower(), "domain")
        self.selector = validate_name(selector, "selector")
        self.ed25519_selector = validate_name(ed25519_selector or selector, "selector")
        self.rsa_key = rsa_key
        self.ed25519_key = ed25519_key
        self._padding = PKCS1v15()
        self._hash = SHA256()
        d_s = f"d={self.domain}".encode(), f"s={self.selector}".encode()
        self._rsa_fixed = [b"v=1;", b"a=rsa-sha256;", b"c=relaxed/relaxed;", d_s[0] + b";", d_s[1] + b";"]
        self._ed_fixed = [b"v=1;", b"a=ed25519-sha256;", b"c=relaxed/relaxed;", d_s[0] + b";",
                          f"s={self.ed25519_selector};".encode()]
        self._layouts: dict[tuple[bool, tuple[bytes, ...], int], _Layout] = {}

    def sign(self, header_lines: list[bytes], body: bytes, now: int, *, body_digest: bytes | None = None,
             canon_cache: dict[bytes, bytes] | None = None) -> list[bytes]:
        """DKIM-Signature fields (CRLF-terminated, folded) to prepend to `header_lines`; rsa-sha256 first.

        `header_lines`: raw header fields, each with its continuation lines and trailing CRLF;
        `body`: raw body after the blank line, CRLF line endings; `now`: the t= timestamp.
        Fan-out (relay/mail/dkim_fanout.py) passes `body_digest`, the body's relaxed SHA-256 worked out
        from what the copies share, and `canon_cache`, the canonical header values they share.
        """
        # index the fields we sign: lowercase name -> raw values, top to bottom
        found: dict[bytes, list[bytes]] = {}
        for field in header_lines:
            colon = field.find(b":")
            if colon <= 0:
                continue
            name = field[:colon].rstrip(b" \t").lower()
            if name in _SIGNED_SET:
                found.setdefault(name, []).append(field[colon + 1:])

        h_names: list[bytes] = []
        names: list[bytes] = []
        values: list[bytes] = []
        for name in SIGNED_HEADERS:
            instances = found.get(name)
            count = len(instances) if instances else 0
            if instances:
                values.extend(reversed(instances))  # RFC 6376 §5.4.2: instances are signed bottom-up
                names.extend([name] * count)
            extra = 1 if (name == _ALWAYS_OVERSIGNED or (count and name in OVERSIGNED_HEADERS)) else 0
            h_names.extend([name] * (count + extra))
        signed_headers = _canon_headers(names, values, canon_cache)
        bh = base64.b64encode(body_digest if body_digest is not None else body_hash(body))
        t = str(int(now)).encode()

        h_key = tuple(h_names)
        out = [self._one(self._layout(False, h_key, len(t)), t, bh, signed_headers, self._rsa_b)]
        if self.ed25519_key is not None:
            out.append(self._one(self._layout(True, h_key, len(t)), t, bh, signed_headers, self._ed_b))
        return out

    def _layout(self, ed: bool, h_names: tuple[bytes, ...], t_len: int) -> _Layout:
        """The folded field around t= and bh= (raw and canonical), cached: it only depends on the names signed."""
        key = (ed, h_names, t_len)
        layout = self._layouts.get(key)
        if layout is None:
            parts = [n + b":" for n in h_names[:-1]] + [h_names[-1] + b";"]  # never empty: from is always listed
            atoms = [(a, True) for a in (self._ed_fixed if ed else self._rsa_fixed)]
            atoms += [(b"t=" + _T_MARK * t_len + b";", True), (b"bh=" + _BH_MARK * _BH_LEN + b";", True),
                      (b"h=" + parts[0], True)] + [(part, False) for part in parts[1:]]
            raw = _fold(b"DKIM-Signature:", atoms)  # ends after the h= tag; b= goes on its own line
            canon = b"dkim-signature:" + _canon_header_value(raw[len(b"DKIM-Signature:"):]) + b" b="
            layout = _Layout(*_split_marks(raw, t_len), *_split_marks(canon, t_len))
            if len(self._layouts) >= 256:
                self._layouts.clear()
            self._layouts[key] = layout
        return layout

    def _rsa_b(self, data: bytes) -> bytes:
        return self.rsa_key.sign(data, self._padding, self._hash)

    def _ed_b(self, data: bytes) -> bytes:
        assert self.ed25519_key is not None
        return self.ed25519_key.sign(hashlib.sha256(data).digest())  # RFC 8463 §3: Ed25519 over the SHA-256

    @staticmethod
    def _one(layout: _Layout, t: bytes, bh: bytes, signed_headers: bytes, signer: Callable[[bytes], bytes]) -> bytes:
        data = b"".join((signed_headers, layout.canon_a, t, layout.canon_b, bh, layout.canon_c))
        sig = base64.b64encode(signer(data))
        first = _MAX_LINE - len(b" b=")
        chunks = [sig[:first]] + [sig[i:i + _MAX_LINE - 1] for i in range(first, len(sig), _MAX_LINE - 1)]
        return b"".join((layout.raw_a, t, layout.raw_b, bh, layout.raw_c, b"\r\n b=", b"\r\n ".join(chunks), b"\r\n"))


def load_private_key(path: Path) -> DkimPrivateKey:
    """Load an unencrypted PEM RSA or Ed25519 private key; ValueError naming the file if it cannot."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read DKIM key file {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"DKIM key file {path} is encrypted; a key without a passphrase is needed") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"DKIM key file {path} is not a usable PEM private key ({exc})") from None
    if not isinstance(key, (RSAPrivateKey, Ed25519PrivateKey)):
        raise ValueError(f"DKIM key file {path} holds a {type(key).__name__}; RSA or Ed25519 is needed")
    return key


def _write_new_key(path: Path, key: DkimPrivateKey) -> None:
    """Write a PKCS#8 PEM with mode 0600; never overwrites (FileExistsError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)


def generate_rsa_key(path: Path, bits: int = 2048) -> RSAPrivateKey:
    """Create an RSA key and write it to `path` (PEM PKCS#8, mode 0600, parents made); FileExistsError if present."""
    if Path(path).exists():
        raise FileExistsError(f"{path} already exists")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    _write_new_key(path, key)
    return key


def generate_ed25519_key(path: Path) -> Ed25519PrivateKey:
    """Create an Ed25519 key and write it to `path` (PEM PKCS#8, mode 0600, parents made); FileExistsError if present."""
    key = ed25519.Ed25519PrivateKey.generate()
    _write_new_key(path, key)
    return key


def _key_tag_and_p(key: DkimPrivateKey | RSAPublicKey | Ed25519PublicKey) -> tuple[str, str]:
    pub = key.public_key() if isinstance(key, (RSAPrivateKey, Ed25519PrivateKey)) else key
    if isinstance(pub, RSAPublicKey):
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "rsa", base64.b64encode(der).decode("ascii")
    if isinstance(pub, Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", base64.b64encode(raw).decode("ascii")
    raise ValueError(f"unsupported DKIM key type {type(key).__name__}")


def dns_txt_record(private_key: DkimPrivateKey) -> str:
    """The DKIM key record to publish: 'v=DKIM1; k=rsa; p=...' or 'v=DKIM1; k=ed25519; p=...'."""
    k, p = _key_tag_and_p(private_key)
    return f"v=DKIM1; k={k}; p={p}"


def dns_record_line(domain: str, selector: str, private_key: DkimPrivateKey) -> str:
    """A zone-file line for the key record, its text split into quoted strings of at most 255 characters."""
    domain = validate_name(domain.rstrip("."), "domain")
    selector = validate_name(selector, "selector")
    k, p = _key_tag_and_p(private_key)
    p_tag = f"p={p}"
    strings = [f"v=DKIM1; k={k}; "] + [p_tag[i:i + _TXT_CHUNK] for i in range(0, len(p_tag), _TXT_CHUNK)]
    quoted = " ".join(f'"{s}"' for s in strings)
    return f"{selector}._domainkey.{domain}. IN TXT ( {quoted} )"
