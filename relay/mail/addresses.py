"""Addresses compared one way (domain lower-case IDNA, local part as given, folded for suppressions); sign-up IPs."""
from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache

import email_validator

# any case: the address comes back through mail systems that may case-fold local parts
_UNSUBSCRIBE_LOCAL = re.compile(r"^unsubscribe\+([A-Za-z0-9_-]{16,512})$", re.IGNORECASE)


class AddressError(ValueError):
    """An address the relay will not send to, with the reason a person can act on."""


_PLAIN_LOCAL = re.compile(r"^[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+)*$")


@lru_cache(maxsize=65536)
def _checked_domain(domain: str) -> str:
    """A domain's ASCII form, validated once however many addresses share it."""
    return _validated("postmaster@" + domain)[1]


def _validated(address: str) -> tuple[str, str]:
    try:
        result = email_validator.validate_email(
            address, check_deliverability=False, allow_smtputf8=True,
            allow_quoted_local=False, allow_domain_literal=False)
    except email_validator.EmailNotValidError as exc:
        raise AddressError(str(exc)) from None
    return address.rpartition("@")[0], result.ascii_domain.lower()


@lru_cache(maxsize=65536)
def normalize_address(address: str) -> tuple[str, str]:
    """(local part as given, ASCII lower-case domain); raises AddressError.

    Two addresses are the same recipient when these pairs are equal: the local part is
    compared exactly (RFC 5321 §2.4 leaves its case to the receiving domain), the
    domain case-insensitively and in its IDNA (xn--) form. No DNS is consulted. Suppressions
    compare more loosely, the local part in any case: see storage.consent.suppression_key.
    """
    local, _, domain = address.rpartition("@")
    if _PLAIN_LOCAL.match(local) and len(local) <= 64 and domain:
        # the common case: a plain ASCII local part; only the domain needs the full check
        ascii_domain = _checked_domain(domain)
    else:
        local, ascii_domain = _validated(address)
    # percent hacks and bang paths route mail through the receiving host: never relay them
    if "%" in local or "!" in local:
        raise AddressError("source-routed local parts (% or !) are not accepted")
    if len(local) + 1 + len(ascii_domain) > 254:
        raise AddressError("The email address is too long.")
    return local, ascii_domain


def unsubscribe_token(address: str, hostname: str) -> str | None:
    """The token of the relay's own unsubscribe+TOKEN@HOSTNAME address (any case), else None."""
    local, _, domain = address.rpartition("@")
    if domain.lower().rstrip(".") != hostname.lower():
        return None
    match = _UNSUBSCRIBE_LOCAL.match(local)
    # tokens are issued in lower case; a mail system on the way back may have upper-cased them
    return match.group(1).lower() if match else None


def is_unsubscribe_address(address: str, hostname: str) -> bool:
    return unsubscribe_token(address, hostname) is not None


def canonical_ip(text: str) -> str:
    """An IP address in its canonical text form; ValueError if it is not one.

    A dotted quad that inet_pton takes is already canonical (it refuses leading zeros and short
    forms, as ipaddress does) and costs a tenth of ipaddress's parse; the rest goes to ipaddress.
    """
    if ":" not in text:
        try:
            socket.inet_pton(socket.AF_INET, text)
            return text
        except OSError:
            pass
    return str(ipaddress.ip_address(text))
