"""Client password hashing with scrypt: scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string

__all__ = ["hash_password", "verify_password", "generate_password"]

SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
# bounds on parameters read back from a stored hash, so a bad one cannot make verification eat memory or hang
_MAX_N = 2 ** 20
_MAX_R = 32
_MAX_P = 16
_MAX_MEM = 64 * 1024 * 1024  # 128 * n * r bytes; the defaults use 16 MiB


def _encode(password: str) -> bytes:
    # surrogateescape: a password decoded from raw bytes that were not UTF-8 round-trips to those bytes
    return password.encode("utf-8", "surrogateescape")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=128 * r * (n + p + 2) + 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """Hash `password` with a fresh 16-byte salt: 'scrypt$16384$8$1$<salt>$<hash>' (standard base64)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(_encode(password), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if `password` matches `encoded`; False (never an exception) on a mismatch or a malformed hash."""
    try:
        scheme, n_s, r_s, p_s, salt_s, key_s = encoded.strip().split("$")
        if scheme != "scrypt" or not (n_s.isdigit() and r_s.isdigit() and p_s.isdigit()):
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P
                and 128 * n * r <= _MAX_MEM):
            return False
        salt = base64.b64decode(salt_s, validate=True)
        expected = base64.b64decode(key_s, validate=True)
        if not salt or not 16 <= len(expected) <= 64:
            return False
        actual = _scrypt(_encode(password), salt, n, r, p, len(expected))
    except (AttributeError, ValueError, TypeError, binascii.Error, MemoryError, UnicodeError):
        return False
    return hmac.compare_digest(actual, expected)


def generate_password() -> str:
    """A random password for a new client: 24 letters and digits (about 143 bits).

    Letters and digits only: a URL-safe password that began with '-' was read as an option by
    the README's `swaks --auth-password "$(cat secrets/demo.password)"` (1 password in 64).
    """
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(24))


_PASSWORD_ALPHABET = string.ascii_letters + string.digits
