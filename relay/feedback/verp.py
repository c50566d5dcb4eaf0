"""The return path of each copy (VERP bounce+TOKEN@HOSTNAME) and its Feedback-ID header."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from storage.consent import suppression_key
from relay.mail.message import field_name, make_field
from relay.crypto.tokens import TokenError, key_id

PREFIX = "bounce+"
VERSION = 0xB1  # the relay's own queue id: 12 hex digits in 6 bytes
VERSION_MTA = 0xB2  # an MTA's queue id as text (the milter's copies carry Postfix's `i` macro)
MAC_BYTES = 10  # 80 bits: every forgery attempt is an SMTP transaction; 2^80 of them is out of reach
DIGEST_BYTES = 5  # recipient digest: tells the copies of one queue id apart
QID_BYTES = 6
_LAYOUT = ">BBH6s5s"  # version, key id, issue day, queue id, recipient digest
BODY_BYTES = struct.calcsize(_LAYOUT)  # 15
TOKEN_CHARS = (BODY_BYTES + MAC_BYTES) * 8 // 5  # 25 bytes → 40 base32 characters, no padding
# An MTA's queue id is text of varying length (Postfix: 10-12 hex digits here, or 15+ letters and
# digits with enable_long_queue_ids; Sendmail 14; Exim 16): up to 21 characters of [0-9A-Za-z-], 6 bits
# each, fill 16 bytes; 35 bytes make 56 base32 characters, `bounce+` + 56 = 63 octets, still within 64.
MTA_QID_BYTES = 16
MTA_QID_CHARS = MTA_QID_BYTES * 8 // 6  # 21
_QID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"  # 63 symbols; 0 ends the id
_MTA_LAYOUT = ">BBH16s5s"  # version, key id, issue day, queue id (6-bit text), recipient digest
MTA_BODY_BYTES = struct.calcsize(_MTA_LAYOUT)  # 25
MTA_TOKEN_CHARS = (MTA_BODY_BYTES + MAC_BYTES) * 8 // 5  # 35 bytes → 56 base32 characters, no padding
_RELAY_QID = re.compile(r"[0-9A-F]{12}")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TOKEN = re.compile(r"bounce\+([a-z2-7]{%d}|[a-z2-7]{%d})@" % (MTA_TOKEN_CHARS, TOKEN_CHARS), re.IGNORECASE)
_FEEDBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CopyRef:
    """What a verified return path names: the copy of queue `queue_id` to the recipient with this digest."""

    queue_id: str
    digest: bytes
    issued: datetime


def recipient_digest(recipient: str) -> bytes:
    return hashlib.sha256(suppression_key(recipient).encode("utf-8", "surrogateescape")).digest()[:DIGEST_BYTES]


def pack_mta_queue_id(queue_id: str) -> bytes:
    """An MTA's queue id in 16 bytes, 6 bits a character; ValueError when it does not fit."""
    if not 0 < len(queue_id) <= MTA_QID_CHARS:
        raise ValueError(f"an MTA queue id has 1 to {MTA_QID_CHARS} characters")
    number = 0
    for char in queue_id:
        number = (number << 6) | (_QID_ALPHABET.index(char) + 1)  # ValueError: not [0-9A-Za-z-]
    return (number << 6 * (MTA_QID_CHARS - len(queue_id))).to_bytes(MTA_QID_BYTES, "big")


def unpack_mta_queue_id(packed: bytes) -> str:
    number = int.from_bytes(packed, "big")
    chars = []
    for shift in range(6 * (MTA_QID_CHARS - 1), -1, -6):
        code = (number >> shift) & 63
        if code == 0:  # the id ended
            break
        chars.append(_QID_ALPHABET[code - 1])
    return "".join(chars)


class ReturnPaths:
    """Issues and verifies VERP tokens with the unsubscribe token keys (newest issues, any verifies).

    RFC 5321 §4.5.3.1.1 limits a local part to 64 octets, so the token cannot carry client, list
    and recipient in clear as the unsubscribe token does: it names the copy — queue id and a
    40-bit digest of the recipient — and the copy's audit row, committed before the copy left,
    names client, list and recipient. `bounce+` and 40 base32 characters make 47 octets (63 with
    the 56 of an MTA's queue id, which is text of its own length and alphabet).
    """

    def __init__(self, keys: list[bytes], hostname: str, max_age: timedelta):
        self.keys = keys
        self.hostname = hostname.lower()
        self.max_age = max_age
        self._kid = key_id(keys[0])
        # a keyed HMAC state per key, copied per token: one token per copy is issued
        self._macs = {key: hmac.new(key, b"consent-relay verp", hashlib.sha256) for key in keys}
        self._issue_mac = self._macs[keys[0]]

    def token(self, queue_id: str, recipient: str, at: datetime) -> str:
        """The relay's own queue id (12 hex digits) in the 40-character form; any other queue id (an
        MTA's, for the milter's copies) as text in the 56-character form; ValueError if it fits neither."""
        day = (at - _EPOCH).days
        if _RELAY_QID.fullmatch(queue_id):
            body = struct.pack(_LAYOUT, VERSION, self._kid, day, bytes.fromhex(queue_id), recipient_digest(recipient))
        else:
            body = struct.pack(_MTA_LAYOUT, VERSION_MTA, self._kid, day, pack_mta_queue_id(queue_id),
                               recipient_digest(recipient))
        mac = self._issue_mac.copy()
        mac.update(body)
        return base64.b32encode(body + mac.digest()[:MAC_BYTES]).decode("ascii").lower()

    def address(self, queue_id: str, recipient: str, at: datetime) -> str:
        return f"{PREFIX}{self.token(queue_id, recipient, at)}@{self.hostname}"

    def verify(self, token: str, now: datetime) -> CopyRef:
        if len(token) not in (TOKEN_CHARS, MTA_TOKEN_CHARS):
            raise TokenError("not a return-path token")
        try:
            raw = base64.b32decode(token.upper())
        except (ValueError, TypeError):
            raise TokenError("not a return-path token") from None
        mta = len(token) == MTA_TOKEN_CHARS
        size = MTA_BODY_BYTES if mta else BODY_BYTES
        body, mac = raw[:size], raw[size:]
        version, kid, day, qid, digest = struct.unpack(_MTA_LAYOUT if mta else _LAYOUT, body)
        if version != (VERSION_MTA if mta else VERSION):
            raise TokenError("not a return-path token")
        ok = False
        for key, state in self._macs.items():
            if key_id(key) == kid:
                check = state.copy()
                check.update(body)
                ok = ok or hmac.compare_digest(check.digest()[:MAC_BYTES], mac)
        if not ok:
            raise TokenError("return-path token does not verify")
        issued = _EPOCH + timedelta(days=day)
        if now - issued > self.max_age + timedelta(days=1):
            raise TokenError("return-path token has expired")
        return CopyRef(unpack_mta_queue_id(qid) if mta else qid.hex().upper(), digest, issued)

    def token_of(self, address: str) -> str | None:
        """The token of bounce+TOKEN@HOSTNAME (any case), else None."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        if domain.lower().rstrip(".") != self.hostname or not local.lower().startswith(PREFIX):
            return None
        token = local[len(PREFIX):]
        return token.lower() if len(token) in (TOKEN_CHARS, MTA_TOKEN_CHARS) else ""

    def tokens_in(self, text: str) -> list[str]:
        """Every bounce+TOKEN@HOSTNAME in a text (a report quoting our copy's Return-Path or envelope)."""
        found = []
        for match in _TOKEN.finditer(text):
            if text[match.end():match.end() + len(self.hostname)].lower() == self.hostname:
                token = match.group(1).lower()
                if token not in found:
                    found.append(token)
        return found


def _safe(value: str, limit: int = 40) -> str:
    return _FEEDBACK_UNSAFE.sub("-", value.strip())[:limit].strip("-") or "-"


def campaign_of(campaign_header: str | None, body: bytes, fingerprint: str | None = None) -> str:
    """The campaign part of Feedback-ID: X-Campaign-ID, else a body fingerprint (supplied, or a
    short SHA-256 of the body: the same newsletter to everyone is one campaign), else "-"."""
    if campaign_header and campaign_header.strip():
        return _safe(campaign_header)
    if fingerprint:
        return _safe(fingerprint)
    if body.strip():
        return hashlib.sha256(body).hexdigest()[:12]
    return "-"


def feedback_id(campaign: str, list_key: str, client: str, sender_id: str) -> str:
    """Feedback-ID: CAMPAIGN:LIST:CLIENT:SENDERID (Gmail's FBL aggregates by these; no colons inside)."""
    return ":".join((_safe(campaign), _safe(list_key), _safe(client), _safe(sender_id, 64)))


def stamp_headers(headers: list[bytes], campaign_header: str | None, body: bytes, list_key: str, client: str,
                  sender_id: str, fingerprint: str | None = None) -> list[bytes]:
    """The copy's header with the relay's Feedback-ID instead of any the client set (DKIM signs it)."""
    value = feedback_id(campaign_of(campaign_header, body, fingerprint), list_key, client, sender_id)
    return [f for f in headers if field_name(f) != "feedback-id"] + [make_field("Feedback-ID", value)]
