"""HMAC-signed tokens for unsubscribe and confirmation links: self-contained, rotatable keys, no DB to verify."""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

VERSION = 1
KINDS = {"unsubscribe": b"u", "confirm": b"c"}
MAC_BYTES = 16  # 128-bit truncated HMAC-SHA256: forging one takes 2^128 tries


class TokenError(ValueError):
    """A token that is malformed, forged, of another kind, or expired."""


@dataclass(frozen=True)
class Token:
    kind: str
    client: str
    list_key: str
    recipient: str
    issued_at: datetime


def key_id(key: bytes) -> int:
    """A stable one-byte id of a key, so verification knows which key to try after a rotation."""
    return hashlib.sha256(b"consent-relay token key id" + key).digest()[0]


def _encode(raw: bytes) -> str:
    # lower-case base32: a mailto local part may be case-folded on the way back to us
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _decode(text: str) -> bytes:
    text = text.strip().upper()
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        raise TokenError("not a token") from None


class TokenCodec:
    """Issues with the newest key; verifies with any key still listed (rotation)."""

    def __init__(self, keys: list[bytes], max_age: timedelta):
        if not keys:
            raise ValueError("at least one token key is needed")
        self.keys = keys
        self.max_age = max_age
        # one token per copy is issued: the key's id and its keyed HMAC state are made once
        self._issue_id = key_id(keys[0])
        self._issue_mac = hmac.new(keys[0], digestmod=hashlib.sha256)

    def issue(self, kind: str, client: str, list_key: str, recipient: str, at: datetime) -> str:
        fields = [f.encode("utf-8") for f in (client, list_key, recipient)]
        if any(len(f) > 255 for f in fields):
            raise ValueError("token fields are limited to 255 bytes")
        body = struct.pack(">BBcI", VERSION, self._issue_id, KINDS[kind], int(at.timestamp()))
        body += b"".join(bytes([len(f)]) + f for f in fields)
        mac = self._issue_mac.copy()
        mac.update(body)
        return _encode(body + mac.digest()[:MAC_BYTES])

    def verify(self, token: str, kind: str, now: datetime) -> Token:
        raw = _decode(token)
        if len(raw) < 7 + 3 + MAC_BYTES:
            raise TokenError("not a token")
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        version, kid, kind_byte, issued = struct.unpack(">BBcI", body[:7])
        if version != VERSION:
            raise TokenError("unknown token version")
        # every key with this id is tried: ids are one byte, so two keys may share one
        if not any(hmac.compare_digest(hmac.new(k, body, hashlib.sha256).digest()[:MAC_BYTES], mac)
                   for k in self.keys if key_id(k) == kid):
            raise TokenError("token signature does not verify")
        if kind_byte != KINDS[kind]:
            raise TokenError(f"not a {kind} token")
        fields, pos = [], 7
        for _ in range(3):
            if pos >= len(body) or pos + 1 + body[pos] > len(body):
                raise TokenError("not a token")
            length = body[pos]
            fields.append(body[pos + 1:pos + 1 + length].decode("utf-8", "replace"))
            pos += 1 + length
        issued_at = datetime.fromtimestamp(issued, timezone.utc)
        if now - issued_at > self.max_age:
            raise TokenError("token has expired")
        return Token(kind, fields[0], fields[1], fields[2], issued_at)
