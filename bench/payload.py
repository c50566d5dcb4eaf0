"""The benchmark's message: a realistic newsletter (text and HTML alternatives) of a given size.

smtp-source's own payload (`-l`) is lines of "1XXXX…": one 79-character token per line, each
with a digit in it, which no newsletter looks like and which sends every line of a content
scanner down its leetspeak path. A marketing relay's workload is multipart/alternative mail with
links, images and a footer, so the benchmark sends that (`bench/run.py --payload newsletter`, the
default); `--payload x-lines` keeps smtp-source's payload for comparison with older runs.

    python bench/payload.py 10240 > /tmp/newsletter.eml
"""
from __future__ import annotations

import sys
from email.message import EmailMessage
from email.policy import SMTP

SENTENCES = [
    "Our spring collection has arrived, and this week we look at the fabrics behind it.",
    "We visited the workshop in Porto where every jacket is cut and stitched by hand.",
    "Readers asked how to care for waxed cotton, so our team wrote a short guide.",
    "The new canvas tote is made from recycled sailcloth and comes in three colours.",
    "Join us on Saturday for a repair café at the Lisbon shop, from ten until four.",
    "Free shipping applies to orders over fifty euros until the end of the month.",
    "Maria from customer care shares her favourite pieces for a rainy weekend away.",
    "The community garden project we support planted two hundred trees this year.",
    "If a size does not fit, returns are free for thirty days, no questions asked.",
    "Thank you for reading, and for being part of this small company's story.",
]


def _paragraphs(n: int) -> list[str]:
    return [" ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(4)) for i in range(n)]


def newsletter(size: int, sender: str = "bench@bench.example", to: str = "rcpt@example.org") -> bytes:
    """A newsletter of about `size` bytes on the wire (CRLF line ends)."""
    count = 1
    while True:
        data = _build(count, sender, to)
        if len(data) >= size or count > 10_000:
            return data
        # grow towards the size: a paragraph costs about 1 KB across both alternatives
        count += max(1, (size - len(data)) // 1100)


def _build(count: int, sender: str, to: str) -> bytes:
    paragraphs = _paragraphs(count)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Bench Outfitters <{sender}>"
    msg["To"] = f"<{to}>"
    msg["Subject"] = "This week at Bench Outfitters: the spring collection"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<newsletter-2026-47@bench.example>"
    text = "Bench Outfitters: news of the week\n\n" + "\n\n".join(
        f"{p}\nRead more: https://bench.example/stories/{i}" for i, p in enumerate(paragraphs))
    msg.set_content(text, cte="quoted-printable")
    rows = "\n".join(
        f'<tr><td style="padding:12px;font-family:Georgia,serif">'
        f'<img src="https://bench.example/img/{i}.jpg" alt="Story {i} picture" width="560">'
        f"<p>{p}</p>"
        f'<p><a href="https://bench.example/stories/{i}">Read the whole story</a></p></td></tr>'
        for i, p in enumerate(paragraphs))
    html = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Bench Outfitters</title></head>"
        '<body><table width="600" align="center" cellpadding="0" cellspacing="0">'
        '<tr><td><a href="https://bench.example/">Bench Outfitters</a> | '
        '<a href="https://bench.example/newsletter/47">View in your browser</a></td></tr>\n'
        f"{rows}\n</table></body></html>\n")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    msg.set_boundary("=_bench-newsletter-47")  # the same bytes every run
    return msg.as_bytes()


if __name__ == "__main__":
    sys.stdout.buffer.write(newsletter(int(sys.argv[1]) if len(sys.argv) > 1 else 10240).replace(b"\r\n", b"\n"))
