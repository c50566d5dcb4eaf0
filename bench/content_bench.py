"""Content stage benchmark: the stage's cost against one `email` parse of the same message.

    .venv/bin/python bench/content_bench.py [--runs 200] [--clock cpu] [--new-text]   (parse and stage timed alternately)

For a 10 KB and a 100 KB marketing newsletter built like real ones (multipart/alternative with the
same copy as wrapped plain text and as table-layout HTML, both quoted-printable: a <head> with CSS,
a hidden preheader, a logo, product sections with images, prices, entities and tracked links, a
footer with unsubscribe and social links; legitimate, so no rule hits and the whole text is scanned),
measured in the same run:
  * baseline: `email.message_from_bytes(raw, policy=email.policy.default)` (parse only);
  * the content stage: `filters.content.check(ctx)` on the same bytes (MIME walk, decoding,
    HTML to text, normalisation, rule matching, link and header checks).
Prints medians and the ratio. Target: the stage costs at most one such parse (ratio <= 1.0).
`--clock cpu` times the process's CPU (all threads) instead of elapsed time: on a busy machine
elapsed time counts what other processes take. (Up to session 12 a message over 32 KiB was
scanned in a worker thread, whose hop then counted too; now only messages over 256 KiB are.)
`--new-text`: the content scorer's cache of recent judgements off, as if every message were a new
text; by default the newsletter is judged once and its judgement reused, as for a campaign.
For information, also the ratio to the default (compat32) `email.message_from_bytes(raw)`, the
yardstick of bench/stage_costs.py, timed in the same rounds. Each stage call gets a new context
(made before its clock starts), as each message does in the relay: the stage leaves its reader view
in ctx.facts for later stages, so a reused context would time only the scan.
Only prints; it does not write bench/RESULTS.md (shared with other benchmarks).
"""
from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import statistics
import sys
import tempfile
import textwrap
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "corpus" / "content"))

import report  # noqa: E402  (the corpus helpers: demo config and a MessageContext)
from filters import content  # noqa: E402
from filters.content import scorer  # noqa: E402

PRODUCTS = [
    ("Rye sourdough", "Our new rye sourdough is baked overnight with a ten-year-old starter and a little "
     "caraway. It keeps for a week in a linen bag, toasts beautifully and is the loaf our Scunthorpe regulars "
     "queue for on Saturday mornings."),
    ("Plum tart", "Late Victoria plums from a farm near Essex, halved and baked on an almond frangipane with "
     "a butter pastry base. Serve it warm with cream, or cold with a cup of tea after the school run."),
    ("Grape and walnut loaf", "A soft white dough folded with red grapes, toasted walnuts and a spoonful of "
     "honey. Our bakers' analysis of last year's orders says it sells out by eleven, so pre-order online."),
    ("Cocktail evening", "Join us on Friday the 14th for our cocktail recipes evening: non-alcoholic spritzes, "
     "a hot apple punch and the cheese board with wine pairing notes written by our cheesemonger. Tickets "
     "include a tasting plate and a recipe card."),
    ("Baking class", "Learn to shape a boule, score a baguette and bake a focaccia at home. Classes run on "
     "Tuesday and Thursday evenings for up to eight people; aprons, flour and a starter jar to take home "
     "are included."),
    ("Gift boxes", "Our autumn gift box holds a jar of damson jam, a bag of oat biscuits, ginger parkin and "
     "a tin of loose-leaf breakfast tea. Add a handwritten card at checkout and we will wrap it for you."),
    ("Opening hours", "From the first of the month the shop opens at 7:30 on weekdays and 8:00 at weekends. "
     "The café upstairs now has step-free access, a baby-changing room and more seats by the window."),
    ("From the blog", "Our head baker explains why we mill part of our own flour, how hydration changes the "
     "crumb and which three tools she would buy first if she were starting to bake bread at home."),
]

# a second sentence per section, so no two sections of a newsletter carry the same copy
DETAILS = [
    "Baked fresh at {hour} every morning in our Doncaster kitchen.",
    "Stock is limited to {count} a day, so reserve yours when you order.",
    "Customers in Lincoln and Hull can collect from our market stall on {day}.",
    "Made with stoneground flour from a mill twenty miles up the river.",
    "Every batch is checked by Priya, who has run our pastry section since 2014.",
    "Wrapped in recycled paper and delivered in a reusable cotton bag.",
    "Suitable for vegetarians; ask us about nut-free and gluten-free options.",
    "Pair it with our salted butter, a mature cheddar or a spoon of marmalade.",
    "Last month {count} readers told us it was their favourite of the season.",
    "Freeze it on the day you buy it and it will keep for three months.",
    "Our apprentices learn this recipe in their first week with us.",
    "Watch the short video on our website to see how it is shaped by hand.",
    "Members of the loyalty scheme get a stamp on their card for each one.",
    "We donate what is left at closing time to the food bank on Wells Street.",
    "The recipe dates back to the 1950s, when the bakery first opened.",
    "Available in the shop from {day}, and online from the following Monday.",
    "Ask at the counter for a taste before you choose.",
    "It travels well, which makes it a good present for friends further away.",
    "The flour, butter and eggs all come from farms within fifty miles.",
    "Tell us what you think: reply to this email and Tom will read every answer.",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _copy(n: int) -> tuple[str, str]:
    """The title and the copy of section n: a product paragraph and a detail sentence."""
    title, text = PRODUCTS[(n - 1) % len(PRODUCTS)]
    detail = DETAILS[(n * 7) % len(DETAILS)].format(hour=f"{5 + n % 3}:{15 * (n % 4):02d}",
                                                     count=20 + n * 13 % 90, day=DAYS[n % len(DAYS)])
    return title, f"{text} {detail}"


HEAD = (
    '<!DOCTYPE html>\n<html lang="en" xmlns="http://www.w3.org/1999/xhtml"><head>\n'
    '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>Our autumn range</title>\n"
    '<style type="text/css">\n'
    "  body { margin: 0; padding: 0; background: #f4f1ec; }\n"
    "  table { border-collapse: collapse; }\n"
    "  .item h2 { font-family: Georgia, serif; }\n"
    "  @media only screen and (max-width: 600px) { .wrapper { width: 100% !important; } "
    ".item { padding: 12px !important; } }\n"
    "</style>\n</head>\n"
    '<body style="margin:0;padding:0;background:#f4f1ec">\n'
    # the preheader: shown by inboxes next to the subject, hidden in the message itself
    '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">New rye sourdough, plum tart and '
    "our autumn gift boxes &#8199;&#65279;&#847;&zwnj;&nbsp;</div>\n"
    '<table role="presentation" class="wrapper" width="600" align="center" '
    'style="width:600px;margin:0 auto;background:#ffffff">\n'
    '<tr><td style="padding:12px 24px;font-size:12px;color:#777;text-align:right">'
    '<a href="https://demo.example/news/autumn?utm_source=newsletter&amp;utm_medium=email" style="color:#777">'
    "View in your browser</a></td></tr>\n"
    '<tr><td style="padding:24px;text-align:center"><img src="https://cdn.demo.example/logo.png" alt="Demo Shop" '
    'width="180" height="60" style="display:block;margin:0 auto;border:0"></td></tr>\n')

FOOTER = (
    '<tr><td style="padding:24px;font-size:12px;line-height:1.6;color:#777;text-align:center;background:#efe9e1">\n'
    '<p style="margin:0 0 8px">Follow us: <a href="https://demo.example/instagram" style="color:#777">Instagram</a>'
    ' &middot; <a href="https://demo.example/facebook" style="color:#777">Facebook</a></p>\n'
    '<p style="margin:0 0 8px">Demo Shop Ltd, 12 Market Street, Scunthorpe DN15 6AA &copy; 2026</p>\n'
    '<p style="margin:0">You receive this because you subscribed at demo.example. '
    '<a href="https://demo.example/unsubscribe?u=reader%40example.org&amp;l=news" style="color:#777">Unsubscribe</a>'
    ' or <a href="https://demo.example/preferences" style="color:#777">update your preferences</a>.</p>\n'
    "</td></tr>\n</table>\n</body></html>\n")


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-")


def html_item(n: int, title: str, text: str, price: str) -> str:
    slug = _slug(title)
    link = f"https://demo.example/shop/{slug}?utm_source=newsletter&amp;utm_medium=email&amp;utm_content=item{n}"
    return (
        f'<tr><td class="item" style="padding:16px 24px;font-family:Georgia,serif;border-top:1px solid #eee">\n'
        f'<h2 style="margin:0 0 8px;font-size:20px;color:#222">{title}</h2>\n'
        f'<a href="{link}"><img src="https://cdn.demo.example/img/{slug}-{n}.jpg" alt="{title}" width="552" '
        f'style="display:block;width:100%;max-width:552px;border:0"></a>\n'
        f'<p style="margin:8px 0;font-size:15px;line-height:1.5;color:#333">{text}</p>\n'
        f'<p style="margin:8px 0;font-size:15px"><strong>&pound;{price}</strong>&nbsp;&middot;&nbsp;'
        f'<a href="{link}" style="color:#b5523b;text-decoration:underline">Shop {title.lower()}</a></p>\n'
        f'</td></tr>\n')


def text_item(n: int, title: str, text: str, price: str) -> str:
    slug = _slug(title)
    wrapped = textwrap.fill(text, 72)
    return (f"{title}\n{'-' * len(title)}\n{wrapped}\n£{price} - shop: "
            f"https://demo.example/shop/{slug}?utm_source=newsletter&utm_medium=email&utm_content=item{n}\n\n")


def newsletter(size: int) -> bytes:
    """A newsletter of about `size` bytes: the number of product sections that comes closest."""
    n = 1
    while len(_newsletter(n + 1)) <= size:
        n += 1
    return min(_newsletter(n), _newsletter(n + 1), key=lambda raw: abs(len(raw) - size))


def _newsletter(items: int) -> bytes:
    html_parts, text_parts = [HEAD], ["Demo Shop - our autumn range\nView in your browser: "
                                      "https://demo.example/news/autumn\n\n"]
    for n in range(1, items + 1):
        title, text = _copy(n)
        price = f"{3 + n * 7 % 20}.{n * 37 % 100:02d}"
        html_parts.append(html_item(n, title, text, price))
        text_parts.append(text_item(n, title, text, price))
    html_parts.append(FOOTER)
    text_parts.append("Demo Shop Ltd, 12 Market Street, Scunthorpe DN15 6AA\n"
                      "Unsubscribe: https://demo.example/unsubscribe?u=reader%40example.org&l=news\n")
    msg = EmailMessage()
    msg["From"] = "Demo Shop <news@demo.example>"
    msg["To"] = "reader@example.org"
    msg["Subject"] = "Our autumn range: rye sourdough, plum tart and gift boxes"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<bench@demo.example>"
    msg.set_content("".join(text_parts), cte="quoted-printable")
    msg.add_alternative("".join(html_parts), subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=email.policy.SMTP)


def medians_ms(calls, runs: int, clock=time.perf_counter) -> list[float]:
    """Median times of several calls, measured in turn (first, second, ..., first, ...), so a spell of
    other load on the machine slows them alike instead of one of them."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for fn, spent in zip(calls, times):
            t = clock()
            fn()
            spent.append(clock() - t)
    return [statistics.median(spent) * 1000 for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (the criterion); cpu: the process's CPU time, all threads "
                             "(the stage's worker thread too), which a busy machine moves less")
    parser.add_argument("--new-text", action="store_true",
                        help="judge every message as a new text: the content scorer's cache of recent "
                             "judgements off (by default a campaign's text, as here, is scored once)")
    args = parser.parse_args()
    if args.new_text:
        scorer.RECENT = scorer.Recent(0)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    with tempfile.TemporaryDirectory() as tmp:
        config = report.demo_config(Path(tmp))
        client = config.clients["demo"]
        content.ruleset_for()  # compiled once, as in a running relay
        loop = asyncio.new_event_loop()
        rows = []
        for label, size in (("10 KB", 10_000), ("100 KB", 100_000)):
            raw = newsletter(size)
            verdict = loop.run_until_complete(content.check(report.context(config, client, raw)))
            assert not verdict.refuses, verdict
            # a new context per call, made before the clock starts: the stage leaves its reader view in
            # ctx.facts for later stages, and a context used twice would time only the scan the second time
            contexts = [report.context(config, client, raw) for _ in range(args.runs)]
            parse, compat, stage = medians_ms(
                [lambda: email.message_from_bytes(raw, policy=email.policy.default),
                 lambda: email.message_from_bytes(raw),
                 lambda: loop.run_until_complete(content.check(contexts.pop()))], args.runs, clock)
            rows.append((label, len(raw), parse, compat, stage))
        loop.close()
    if args.clock == "cpu":
        print("(CPU time of the process, all threads)")
    if args.new_text:
        print("(every message scored as a new text)")
    print("| message | bytes | email parse (policy.default) ms | content stage ms | ratio "
          "| compat32 parse ms | ratio to compat32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, size, parse, compat, stage in rows:
        print(f"| {label} | {size} | {parse:.3f} | {stage:.3f} | {stage / parse:.2f} "
              f"| {compat:.3f} | {stage / compat:.2f} |")


if __name__ == "__main__":
    main()
