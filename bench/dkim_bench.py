"""Per-copy cost of DkimSigner.sign on a ~10 KB message against a raw OpenSSL RSA-2048 sign of the same bytes."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from relay.mail.dkim import DkimSigner  # noqa: E402

ITERATIONS = 2000
WARMUP = 200
ROUNDS = 5  # the two measurements alternate in rounds so drift in machine load hits both alike
TARGET_RATIO = 1.5
NOW = 1_700_000_000

HEADERS = [
    b"From: Acme News <news@acme.example>\r\n",
    b"To: Some Reader <reader@example.org>\r\n",
    b"Subject: Spring offers: 20% off everything in the garden section\r\n",
    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
    b"Message-ID: <20231114221320.4711@acme.example>\r\n",
    b"MIME-Version: 1.0\r\n",
    b"Content-Type: multipart/alternative;\r\n boundary=\"=_b0undary_4711\"\r\n",
    b"List-Id: Spring offers <spring.acme.example>\r\n",
    b"List-Unsubscribe: <https://relay.example/u/eyJjIjoiYWNtZSIsImwiOiJzcHJpbmcifQ.c2ln>,\r\n"
    b" <mailto:unsubscribe+eyJjIjoiYWNtZSIsImwiOiJzcHJpbmcifQ.c2ln@relay.example>\r\n",
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    b"Received: from client.acme.example by relay.example with ESMTPSA; Tue, 14 Nov 2023 22:13:20 +0000\r\n",
    b"X-Mailer: acme-mailer 2.3\r\n",
]


def make_body(size: int = 10_000) -> bytes:
    """A multipart text+HTML body of about `size` bytes, with some whitespace for canonicalization to do."""
    text_line = b"Dear reader, our spring offers are here: seeds, tools and  more.  \r\n"
    html_line = b"<p>Dear reader, our <b>spring offers</b> are here:\tseeds, tools and more.</p>\r\n"
    parts = [b"--=_b0undary_4711\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"]
    parts += [text_line] * (size // 2 // len(text_line))
    parts.append(b"\r\n--=_b0undary_4711\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n")
    parts += [html_line] * (size // 2 // len(html_line))
    parts.append(b"</body></html>\r\n--=_b0undary_4711--\r\n\r\n")
    return b"".join(parts)


def per_copy_us(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--ed25519", action="store_true", help="also add an ed25519-sha256 signature to each copy")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = None
    if args.ed25519:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        ed_key = Ed25519PrivateKey.generate()
    signer = DkimSigner("acme.example", "s1", key, ed_key, "e1" if ed_key else None)
    body = make_body()
    message = b"".join(HEADERS) + b"\r\n" + body
    padding, sha256 = PKCS1v15(), SHA256()

    def dkim_sign() -> None:
        signer.sign(HEADERS, body, NOW)

    def raw_sign() -> None:
        key.sign(message, padding, sha256)

    per_copy_us(dkim_sign, WARMUP)
    per_copy_us(raw_sign, WARMUP)
    n = max(1, args.iterations // ROUNDS)
    dkim_t, raw_t = [], []
    for _ in range(ROUNDS):
        dkim_t.append(per_copy_us(dkim_sign, n))
        raw_t.append(per_copy_us(raw_sign, n))
    dkim_us, raw_us = statistics.median(dkim_t), statistics.median(raw_t)
    ratio = dkim_us / raw_us
    kind = "rsa-sha256 + ed25519-sha256" if ed_key else "rsa-sha256"
    print(f"message: {len(message)} bytes ({len(HEADERS)} header fields), {n * ROUNDS} iterations per measurement")
    print(f"DkimSigner.sign ({kind}): {dkim_us:8.1f} us/copy  ({1e6 / dkim_us:6.0f} copies/s)")
    print(f"raw OpenSSL RSA-2048 sign:      {raw_us:8.1f} us/copy  ({1e6 / raw_us:6.0f} copies/s)")
    print(f"ratio: {ratio:.3f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
