"""Write the labelled content corpus: legitimate mail and violations, plain and disguised.

    .venv/bin/python tests/corpus/content/make_corpus.py

Deterministic: running it again writes the same files. Each message is a CRLF .eml file from
news@demo.example (the demo client); labels.toml maps each file to "legit" or the expected
category and rule id. The corpus test (tests/test_content.py) and report.py read labels.toml.
"""
from __future__ import annotations

import base64
import html as html_mod
import random
import sys
from email import policy
from email.message import EmailMessage
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from policy_cases import (HEADERS, IMAGE_ONLY, LEGIT_LINKS, LINKS, MORE_NEGATIVES, MORE_POSITIVES, NEGATIVES,  # noqa: E402
                          POSITIVES, RULES4_NEGATIVES, RULES4_POSITIVES)
FROM = "Demo Shop <news@demo.example>"
DATE = "Mon, 23 Nov 2026 10:00:00 +0000"
SMTP = policy.SMTP  # CRLF line ends, RFC 2047 headers

# ------------------------------------------------------------------------------------------------
# legitimate mail: (name, subject, text, charset for legacy shapes); text paragraphs split by blank lines

LEGIT = [
    ("en-bakery", "Our autumn cakes are here",
     "Hello baker friends,\n\nOur new grape and walnut loaf is out this week, and the plum tart is back.\n\n"
     "Wine pairing tip: a late-harvest Riesling goes well with the apple cake.\n\n"
     "Free delivery in Scunthorpe, Essex and Middlesex on orders over 30 pounds.\n\n"
     "See the menu: https://demo.example/menu", "iso-8859-1"),
    ("en-bar-recipes", "Three cocktail recipes for the weekend",
     "This week: three cocktail recipes you can make at home, from a classic mojito with a splash of rum "
     "to an alcohol-free ginger spritz.\n\nOur bartender explains the skill behind a good shake.\n\n"
     "Full recipes: https://demo.example/recipes/cocktails", "iso-8859-1"),
    ("en-therapy", "New therapist joins our practice",
     "Dr. Ana Patel, a licensed therapist, joins our clinic in Sussex.\n\nShe specialises in cognitive "
     "analysis and couples counselling. Book a first session online: https://demo.example/book\n\n"
     "Our pharmacy next door now offers flu vaccinations; allergy relief is available over the counter.",
     "iso-8859-1"),
    ("en-hardware", "Garden season: tools on sale",
     "Spring is here. Our weed control spray and a hot glue gun are on sale this week.\n\nThe gun-metal grey "
     "garden chairs are 20% off, and so are the wine glasses and the wine rack.\n\n"
     "Stock up on seeds before the rush: https://demo.example/garden", "iso-8859-1"),
    ("en-diner", "Brunch is back",
     "Order hash browns now for Sunday delivery, or come in for our pancake stack.\n\n"
     "Our coffee is roasted in Essex. Weekend brunch 9 to 2.\n\nhttps://demo.example/brunch", "iso-8859-1"),
    ("en-museum", "This month at the museum",
     "Adult tickets are 12 pounds, children go free.\n\nNew exhibition: the history of fireworks in China, "
     "and a film night with Casino Royale on the big screen.\n\nJoin us for the fireworks show on New Year's Eve.",
     "iso-8859-1"),
    ("en-finance-news", "Your weekly market summary",
     "Markets closed higher this week. The analysis team looks at bond yields and the central bank decision.\n\n"
     "Reminder: past performance is no guarantee of future results. Read the full report on our site.\n\n"
     "https://demo.example/reports/week-47", "iso-8859-1"),
    ("en-gym", "New classes at the gym",
     "Free spin class every Monday, and a new skill workshop on kettlebells.\n\n"
     "Our nutrition coach shares a recipe for a high-protein breakfast.\n\nhttps://demo.example/classes",
     "iso-8859-1"),
    ("en-books", "Books of the month",
     "This month: a thriller set in a Monte Carlo casino, a history of the stock exchange, and a memoir by a "
     "retired therapist.\n\nMembers get 10% off every order.\n\nhttps://demo.example/books", "iso-8859-1"),
    ("en-giveaway", "Win a bike in our summer giveaway",
     "Enter our summer giveaway to win a city bike. One winner will be drawn on 30 June.\n\n"
     "No purchase necessary. Terms: https://demo.example/giveaway-terms", "iso-8859-1"),
    ("en-software", "Version 4.2 is out",
     "Version 4.2 brings faster sync and a new dark mode. Your licence key stays the same.\n\n"
     "Download the update from your account page: https://demo.example/account\n\nRelease notes: "
     "https://demo.example/changelog", "iso-8859-1"),
    ("en-video", "Watch our new tutorial",
     "Our new tutorial on sourdough is on YouTube: https://youtu.be/dQw4w9WgXcQ\n\n"
     "Questions? Reply to this email.", "iso-8859-1"),
    ("de-baeckerei", "Neue Herbstkuchen",
     "Liebe Kundinnen und Kunden,\n\nunser Traubenkuchen ist zurück, dazu empfehlen wir einen Kaffee aus "
     "unserer Rösterei.\n\nÖffnungszeiten: Mo–Sa 7–18 Uhr. Größere Bestellungen bitte zwei Tage vorher.\n\n"
     "Zur Speisekarte: https://demo.example/karte", "windows-1252"),
    ("de-verein", "Einladung zur Mitgliederversammlung",
     "Liebe Mitglieder,\n\ndie Mitgliederversammlung findet am 12. Dezember statt. Auf der Tagesordnung: "
     "Haushalt, Wahlen und das Sommerfest mit Feuerwerk.\n\nMit freundlichen Grüßen\nDer Vorstand",
     "iso-8859-1"),
    ("de-shop", "Winterschlussverkauf: 30 % auf Jacken",
     "Nur diese Woche: 30 % Rabatt auf alle Winterjacken und Schals.\n\nVersandkostenfrei ab 50 Euro. "
     "Rücksendung innerhalb von 30 Tagen kostenlos.\n\nJetzt ansehen: https://demo.example/sale", "iso-8859-15"),
    ("de-bank", "Ihr Kontoauszug ist verfügbar",
     "Guten Tag,\n\nIhr Kontoauszug für November steht im Online-Banking bereit. Bitte prüfen Sie die Umsätze.\n\n"
     "Dies ist eine automatische Nachricht.", "iso-8859-1"),
    ("fr-boulangerie", "Nos galettes des rois arrivent",
     "Chers clients,\n\nles galettes des rois sont de retour : frangipane, pomme et chocolat.\n\n"
     "Accord mets et vins : un cidre brut ou un crémant se marie très bien avec la galette.\n\n"
     "Commandez en boutique ou sur https://demo.example/galettes", "iso-8859-1"),
    ("fr-theatre", "Programme de décembre",
     "Au programme ce mois-ci : une pièce de Molière, un concert de jazz et un atelier d'écriture.\n\n"
     "Tarif adulte 15 €, tarif réduit 10 €.\n\nRéservez : https://demo.example/billets", "iso-8859-15"),
    ("fr-facture", "Votre facture de novembre",
     "Bonjour,\n\nvotre facture de novembre est disponible dans votre espace client. Montant : 42,90 €.\n\n"
     "Merci de votre confiance.", "iso-8859-1"),
    ("es-panaderia", "Novedades de otoño",
     "Hola,\n\nesta semana tenemos pan de uva y nueces, y vuelve la tarta de manzana.\n\n"
     "Envío gratis en pedidos superiores a 30 €.\n\nMenú: https://demo.example/menu", "iso-8859-1"),
    ("es-viajes", "Ofertas de viaje para diciembre",
     "Descubre nuestras escapadas de fin de semana: Sevilla, Granada y Valencia.\n\n"
     "Incluye hotel, desayuno y una visita guiada por el casco antiguo.\n\nReserva en https://demo.example/viajes",
     "iso-8859-1"),
    ("es-pedido", "Tu pedido ha sido enviado",
     "Hola María,\n\ntu pedido 10234 ha sido enviado y llegará en 2 o 3 días laborables.\n\n"
     "Puedes seguir el envío en tu cuenta.", "iso-8859-1"),
    ("ja-news", "今月のお知らせ",
     "いつもご利用いただきありがとうございます。\n\n今月は新しいパンとケーキを販売しています。"
     "ぶどうとくるみのパンが人気です。\n\n営業時間は午前7時から午後6時までです。\n\nhttps://demo.example/ja", "iso-2022-jp"),
    ("ja-order", "ご注文ありがとうございます",
     "山田様\n\nご注文番号 10234 の商品を発送いたしました。お届けまで2〜3日かかります。\n\n"
     "今後ともよろしくお願いいたします。", "shift_jis"),
    ("ja-event", "冬のイベントのご案内",
     "冬のイベントを開催します。花火大会の観覧席もご用意しています。\n\n"
     "料金：大人 1,500円、子ども無料。\n\nお申し込みはこちら：https://demo.example/event", "euc-jp"),
    ("en-receipt", "Your receipt from Demo Shop",
     "Thanks for your order 10234.\n\n1 x Sourdough loaf  4.50\n2 x Croissant  5.00\nTotal 9.50 EUR\n\n"
     "Questions? hello@demo.example", "us-ascii"),
    ("en-password", "Reset your password",
     "Someone asked to reset the password of your Demo Shop account. If it was you, use this link within "
     "an hour: https://demo.example/reset?t=abc123\n\nIf not, ignore this message.", "us-ascii"),
]

SHAPES = ["plain", "qp", "html", "alternative", "base64", "legacy"]

# the categories whose vocabulary each legitimate message shares (it is a negative example for them)
NEGATIVE_FOR = {"en-bakery": "alcohol", "en-bar-recipes": "alcohol", "en-therapy": "pharmacy,dating",
                "en-hardware": "firearms,cannabis,alcohol", "en-diner": "cannabis", "en-museum": "fireworks,gambling,adult",
                "en-finance-news": "trading", "en-gym": "supplements", "en-books": "gambling,trading",
                "en-giveaway": "gambling", "en-software": "piracy", "en-video": "links", "de-verein": "fireworks",
                "de-bank": "debt", "ja-event": "fireworks", "en-receipt": "headers", "en-password": "headers"}

# ------------------------------------------------------------------------------------------------
# violations: (name, category, rule, subject, text) -- each is written plainly and disguised


def leet(s: str) -> str:
    return s.translate(str.maketrans({"a": "4", "i": "1", "o": "0", "e": "3"}))


def spaced(word: str) -> str:
    return " ".join(word)


def zero_width(s: str) -> str:
    return "\u200b".join(s)


def homoglyph(s: str) -> str:
    return s.translate(str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х"}))


VIOLATIONS = [
    # name, category, rule id, key phrase, filler sentence
    ("pharmacy-buy", "pharmacy", "pharmacy.drug-sales", "buy viagra online", "Discreet shipping worldwide."),
    ("pharmacy-online", "pharmacy", "pharmacy.online-pharmacy", "canadian pharmacy", "Save 80% on your meds."),
    ("pharmacy-norx", "pharmacy", "pharmacy.no-prescription", "no prescription needed", "Order today, ships tonight."),
    ("dating-singles", "dating", "dating.hookup", "meet lonely women tonight", "Profiles verified."),
    ("dating-escort", "dating", "dating.escort", "escort service", "Available 24/7 in your city."),
    ("getrich-home", "get-rich", "get-rich.work-from-home", "earn 500 dollars a day", "No experience needed."),
    ("getrich-quick", "get-rich", "get-rich.get-rich", "get rich quick", "Our system does the work."),
    ("trading-tips", "trading", "trading.stock-tips", "penny stocks about to explode", "Buy before Monday."),
    ("trading-forex", "trading", "trading.forex-crypto", "forex signals", "Guaranteed pips every week."),
    ("mlm-join", "mlm", "mlm.mlm", "network marketing opportunity", "Build your downline fast."),
    ("debt-repair", "debt", "debt.credit-repair", "credit repair", "Fix your score in 30 days."),
    ("debt-payday", "debt", "debt.payday", "payday loans", "Cash in your account today."),
    ("debt-relief", "debt", "debt.debt-relief", "debt relief program", "Cut what you owe in half."),
    ("supp-diet", "supplements", "supplements.weight-loss", "weight loss pills", "Melt fat without exercise."),
    ("supp-testo", "supplements", "supplements.supplements", "testosterone booster", "Feel 20 again."),
    ("gambling-casino", "gambling", "gambling.casino", "online casino", "Claim 200 free spins now."),
    ("gambling-prize", "gambling", "gambling.sweepstakes", "claim your prize", "Reply with your bank details."),
    ("alcohol-sale", "alcohol", "alcohol.sales", "cheap vodka", "Delivered to your door tonight."),
    ("tobacco-sale", "tobacco", "tobacco.tobacco", "disposable vapes", "Wholesale prices, no ID checks."),
    ("firearms-sale", "firearms", "firearms.firearms", "ammo for sale", "Bulk discounts on every caliber."),
    ("fireworks-sale", "fireworks", "fireworks.fireworks", "fireworks sale", "Rockets and firecrackers in stock."),
    ("cannabis-sale", "cannabis", "cannabis.cannabis", "thc gummies", "Discreet delivery nationwide."),
    ("kratom-sale", "cannabis", "cannabis.kratom", "kratom", "Premium capsules, fast shipping."),
    ("piracy-crack", "piracy", "piracy.software", "cracked software", "Every title, free keygen."),
    ("piracy-iptv", "piracy", "piracy.media", "iptv subscription cheap", "All channels, all sports."),
    ("lists-sale", "list-selling", "list-selling.lists", "email lists for sale", "Verified addresses, any industry."),
    ("adult-cams", "adult", "adult.explicit", "live cam girls", "Free registration tonight."),
]

# short phrases whose key word can be spelled out letter by letter
SPACED_WORDS = {"gambling-casino": ("online ", "casino", " bonus"), "pharmacy-buy": ("buy ", "viagra", " online"),
                "adult-cams": ("", "porn", " videos free"), "kratom-sale": ("buy ", "kratom", " capsules")}

FOREIGN = [
    ("de-casino", "gambling", "gambling.casino", "Bonus ohne Einzahlung", "Jetzt im Online Casino spielen!",
     "iso-8859-1"),
    ("de-kredit", "debt", "debt.credit-repair", "Kredit ohne Schufa", "Sofort aufs Konto, auch bei negativer Auskunft.",
     "iso-8859-1"),
    ("de-potenz", "pharmacy", "pharmacy.drug-sales", "Viagra ohne Rezept kaufen", "Diskreter Versand.",
     "iso-8859-1"),
    ("fr-casino", "gambling", "gambling.casino", "Casino en ligne", "Tours gratuits offerts à l'inscription.",
     "iso-8859-1"),
    ("fr-gain", "gambling", "gambling.sweepstakes", "Vous avez gagné", "Réclamez votre gain avant ce soir.",
     "iso-8859-1"),
    ("es-prestamo", "debt", "debt.payday", "Préstamos rápidos", "Sin papeleo, dinero hoy mismo.", "iso-8859-1"),
    ("es-adelgazar", "supplements", "supplements.weight-loss", "Pastillas para adelgazar",
     "Pierde peso sin dieta.", "iso-8859-1"),
    ("ja-casino", "gambling", "gambling.casino", "オンラインカジノ", "入金不要ボーナスで今すぐ遊べます。", "iso-2022-jp"),
    ("ja-dating", "dating", "dating.hookup", "出会い系", "今すぐ会える女性がたくさん。", "shift_jis"),
    ("ja-loan", "debt", "debt.payday", "即日融資", "ブラックでも借りれる。", "euc-jp"),
]

LINK_CASES = [
    # name, rule, html anchor (href, text) or plain-text url
    ("link-shortener", "links.shortener", ("https://bit.ly/3xYz9", "See our new collection")),
    ("link-shortener-text", "links.shortener", "https://tinyurl.com/y7abc12"),
    ("link-shortener-rbgy", "links.shortener", ("https://rb.gy/abc12", "Read more")),
    ("link-ip", "links.ip-host", ("http://192.0.2.44/login", "Log in to your account")),
    ("link-ip-decimal", "links.ip-host", ("http://3221225994/offer", "Your offer")),
    ("link-ip-text", "links.ip-host", "http://198.51.100.7:8080/invoice.pdf"),
    ("link-userinfo", "links.userinfo", ("http://paypal.com@evil.example/verify", "Verify your account")),
    ("link-userinfo-text", "links.userinfo", "https://www.demo.example@203.0.113.9/"),
    ("link-mismatch", "links.mismatched-anchor", ("http://evil.example/login", "https://www.paypal.com/login")),
    ("link-mismatch-bare", "links.mismatched-anchor", ("https://track.evil.example/x", "www.bankofamerica.com")),
    ("link-mismatch-hidden", "links.mismatched-anchor", ("http://login-verify.example/", "paypal.com")),
    ("operator-domain", "operator.domain", ("https://relay-operator.example/account", "Manage your account")),
    ("operator-address", "operator.address", "Questions? Write to abuse@relay-operator.example any time."),
]

HEADER_CASES = [
    ("hdr-re", "headers.deceptive-subject", {"Subject": "Re: your invoice"}),
    ("hdr-fwd", "headers.deceptive-subject", {"Subject": "Fwd: Important update about your account"}),
    ("hdr-aw", "headers.deceptive-subject", {"Subject": "AW: Ihre Bestellung"}),
    ("hdr-tr", "headers.deceptive-subject", {"Subject": "TR: Votre commande"}),
    ("hdr-re-homoglyph", "headers.deceptive-subject", {"Subject": "Rе: meeting tomorrow"}),
    ("hdr-display-domain", "headers.display-name", {"From": "paypal.com Security <news@demo.example>"}),
    ("hdr-display-email", "headers.display-name", {"From": '"service@paypal.com" <news@demo.example>'}),
    ("hdr-display-homoglyph", "headers.display-name", {"From": "Аmаzon.com Orders <news@demo.example>"}),
]

LEGIT_HEADER_CASES = [
    ("legit-hdr-reply", {"Subject": "Re: your question about delivery", "In-Reply-To": "<q123@example.org>",
                         "References": "<q123@example.org>"}),
    ("legit-hdr-display", {"From": "PayPal Security <news@demo.example>"}),
    ("legit-hdr-display-own", {"From": "Demo Shop (demo.example) <news@demo.example>"}),
    ("legit-hdr-report", {"Subject": "Report: November results"}),
]


# ------------------------------------------------------------------------------------------------
# building messages

def paragraphs_html(text: str, extra: str = "") -> str:
    body = "".join(f"<p>{html_mod.escape(p).replace(chr(10), '<br>')}</p>\n" for p in text.split("\n\n"))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Newsletter</title>"
            f"<style>p {{ font-family: sans-serif; }}</style></head>\n<body>\n{body}{extra}</body></html>\n")


def headers(msg: EmailMessage, subject: str, n: int, extra: dict[str, str] | None = None) -> None:
    extra = dict(extra or {})
    msg["From"] = extra.pop("From", FROM)
    msg["To"] = "reader@example.org"
    msg["Subject"] = extra.pop("Subject", subject)
    msg["Date"] = DATE
    msg["Message-ID"] = f"<corpus-{n}@demo.example>"
    for k, v in extra.items():
        msg[k] = v


def make(shape: str, subject: str, text: str, n: int, charset: str = "utf-8", html: str | None = None,
         extra: dict[str, str] | None = None) -> bytes:
    random.seed(n)  # MIME boundaries come from `random`: the same files every run
    msg = EmailMessage()
    headers(msg, subject, n, extra)
    html = html if html is not None else paragraphs_html(text)
    if shape == "plain":
        msg.set_content(text, charset="utf-8", cte="8bit")
    elif shape == "qp":
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
    elif shape == "base64":
        msg.set_content(text, charset="utf-8", cte="base64")
    elif shape == "legacy":
        return legacy(msg, text, charset)
    elif shape == "html":
        msg.set_content(html, subtype="html", charset="utf-8", cte="quoted-printable")
    elif shape == "html-base64":
        msg.set_content(html, subtype="html", charset="utf-8", cte="base64")
    elif shape == "alternative":
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    elif shape == "mixed":
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="info.pdf")
    else:
        raise ValueError(shape)
    data = msg.as_bytes(policy=SMTP)
    assert b"\n" not in data.replace(b"\r\n", b""), "CRLF only"
    return data


def legacy(msg: EmailMessage, text: str, charset: str) -> bytes:
    """A text/plain part in a legacy charset, encoded by hand (7bit ISO-2022-JP, base64, or QP)."""
    import quopri

    try:
        data = text.replace("\n", "\r\n").encode(charset)
    except UnicodeEncodeError:  # e.g. the euro sign: ISO-8859-15 has it, ISO-8859-1 does not
        charset = "iso-8859-15"
        data = text.replace("\n", "\r\n").encode(charset)
    if charset in ("iso-2022-jp", "us-ascii"):
        cte, body = "7bit", data
    elif charset in ("shift_jis", "euc-jp"):
        cte, body = "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")
    else:
        cte, body = "quoted-printable", quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = msg.as_bytes(policy=SMTP).split(b"\r\n\r\n", 1)[0]
    head += (f"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"{charset}\"\r\n"
             f"Content-Transfer-Encoding: {cte}\r\n").encode("ascii")
    return head + b"\r\n" + body.rstrip(b"\r\n") + b"\r\n"


def write_all(directory: Path = HERE) -> dict[str, dict[str, str]]:
    for old in directory.glob("*.eml"):
        old.unlink()
    labels: dict[str, dict[str, str]] = {}
    n = 0

    def out(name: str, data: bytes, expect: str, rule: str = "", note: str = "", negative_for: str = "") -> None:
        nonlocal n
        fname = f"{n:03d}-{name}.eml"
        (directory / fname).write_bytes(data)
        entry = {"expect": expect}
        if rule:
            entry["rule"] = rule
        if note:
            entry["note"] = note
        if negative_for:
            entry["negative_for"] = negative_for
        labels[fname] = entry
        n += 1

    # legit: each message in several MIME shapes
    for i, (name, subject, text, charset) in enumerate(LEGIT):
        shapes = [SHAPES[(i + k) % len(SHAPES)] for k in range(3)]
        if "legacy" not in shapes and i % 2 == 0:
            shapes[0] = "legacy"
        for shape in shapes:
            cs = charset if shape == "legacy" else "utf-8"
            if shape == "legacy" and charset == "us-ascii":
                cs = "us-ascii"
            out(f"legit-{name}-{shape}", make(shape, subject, text, n, cs), "legit", note=shape,
                negative_for=NEGATIVE_FOR.get(name, ""))
    # legit with links: own domain tracking, anchor showing own domain, the relay's own form
    links_html = paragraphs_html(
        "Our winter catalogue is out.",
        '<p><a href="https://demo.example/c/track?u=1">demo.example/catalogue</a> | '
        '<a href="https://shop.demo.example/new">See what is new</a> | '
        '<a href="https://www.youtube.com/watch?v=abc">Watch the video</a> | '
        '<img src="https://demo.example/logo.png" alt="Demo Shop logo"></p>')
    out("legit-links-html", make("html", "Winter catalogue", "Our winter catalogue is out.", n, html=links_html), "legit",
        negative_for="links")
    for name, extra in LEGIT_HEADER_CASES:
        out(name, make("plain", "Hello", "Thanks for being a customer. Our opening hours stay the same.", n,
                       extra=extra), "legit", negative_for="headers")
    out("legit-mixed-attachment", make("mixed", "Your invoice", "Your invoice is attached. Total 42.90 EUR.", n),
        "legit", note="attachment")

    # violations: plain and disguised
    for i, (name, cat, rule, phrase, filler) in enumerate(VIOLATIONS):
        text = f"Hello,\n\n{phrase.capitalize()}. {filler}\n\nBest regards"
        out(f"{name}-plain", make("plain", "Special offer", text, n), cat, rule, "plain")
        variant = i % 6
        if variant == 0:
            t = f"Hello,\n\n{leet(phrase).capitalize()}! {filler}"
            out(f"{name}-leet", make("qp", "Special offer", t, n), cat, rule, "leetspeak, QP")
        elif variant == 1:
            t = f"Hello,\n\n{zero_width(phrase)}. {filler}"
            out(f"{name}-zerowidth", make("base64", "Special offer", t, n), cat, rule, "zero-width, base64")
        elif variant == 2:
            t = f"Hello,\n\n{homoglyph(phrase)}. {filler}"
            out(f"{name}-homoglyph", make("plain", "Special offer", t, n), cat, rule, "Cyrillic homoglyphs")
        elif variant == 3:
            mid = len(phrase) // 2
            h = paragraphs_html("Hello,", f'<p>{phrase[:mid]}<span style="display:none">zq</span>{phrase[mid:]}. '
                                         f'{filler}</p>')
            out(f"{name}-hidden-split", make("html", "Special offer", "", n, html=h), cat, rule,
                "word split by hidden HTML")
        elif variant == 4:
            h = paragraphs_html("Our new collection is here.",
                                f'<p><img src="https://demo.example/banner.png" alt="{phrase}. {filler}"></p>')
            out(f"{name}-alt", make("html-base64", "Special offer", "", n, html=h), cat, rule,
                "image alt text, base64 HTML")
        else:
            entity = "".join(f"&#{ord(c)};" if k % 2 == 0 else c for k, c in enumerate(phrase))
            h = paragraphs_html("Hello,", f"<p>{entity}<!-- x -->. {filler}</p>")
            out(f"{name}-entities", make("alternative", "Special offer", "Hello, see the HTML part.", n, html=h),
                cat, rule, "HTML entities, alternative")
        # a second disguise for every third violation
        if i % 3 == 0:
            fw = phrase.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
            out(f"{name}-fullwidth", make("qp", "Special offer", f"Hello,\n\n{fw}. {filler}", n), cat, rule,
                "fullwidth letters")
        if i % 3 == 1:
            h = paragraphs_html("Thank you for your interest in our newsletter.",
                                f'<div style="display:none;font-size:0">{phrase}</div>')
            out(f"{name}-hidden-text", make("html", "Newsletter", "", n, html=h), cat, rule,
                "hidden HTML text only")
        if i % 3 == 2:
            out(f"{name}-subject", make("plain", phrase.capitalize() + " inside", "Open for details.", n), cat, rule,
                "subject only (RFC 2047)")
    for name, (before, word, after) in SPACED_WORDS.items():
        cat, rule = next((c, r) for nm, c, r, *_ in VIOLATIONS if nm == name)
        t = f"Hi,\n\n{before}{spaced(word)}{after} - click below."
        out(f"{name}-spaced", make("plain", "Hi", t, n), cat, rule, "spaced-out letters")
        t = f"Hi,\n\n{before}{'.'.join(word)}{after} - click below."
        out(f"{name}-dotted", make("qp", "Hi", t, n), cat, rule, "dotted letters")
    for name, cat, rule, phrase, filler, charset in FOREIGN:
        text = f"{phrase}!\n\n{filler}"
        out(f"{name}-legacy", make("legacy", phrase, text, n, charset), cat, rule, charset)
        out(f"{name}-html", make("html", "News", "", n, html=paragraphs_html(text)), cat, rule, "html")
    for name, rule, link in LINK_CASES:
        cat = rule.split(".")[0]
        if isinstance(link, tuple):
            h = paragraphs_html("Our winter catalogue is out.",
                                f'<p><a href="{html_mod.escape(link[0])}">{html_mod.escape(link[1])}</a></p>')
            out(name, make("alternative", "Winter catalogue", "Our winter catalogue is out.", n, html=h),
                cat, rule, "html link")
        else:
            out(name, make("plain", "Winter catalogue", f"Our winter catalogue is out.\n\n{link}\n", n),
                cat, rule, "text link")
    for name, rule, extra in HEADER_CASES:
        out(name, make("plain", "Hello", "Thanks for being a customer. Our opening hours stay the same.", n,
                       extra=extra), "headers", rule)
    write_policy_cases(out, lambda: n)
    return labels


def write_policy_cases(out, counter) -> None:
    """The cases of policy_cases.py: every category the policies name, and what shares its words."""
    for name, cat, rule, subject, text, shape in POSITIVES:
        if shape == "css-split":
            data = make("html", subject, "", counter(), html=css_split_html(text))
        else:
            data = make(shape, subject, text, counter())
        out(name, data, cat, rule, shape)
    for name, negative_for, subject, text, shape in NEGATIVES:
        if shape.startswith("image-"):
            data = make("html", subject, text, counter(), html=image_html(shape, text))
        else:
            data = make(shape, subject, text, counter())
        out(f"legit-{name}", data, "legit", note=shape, negative_for=negative_for)
    for name, rule, snippet in LINKS:
        html = (f"<!DOCTYPE html>\n<html><body>{snippet}</body></html>\n" if name in IMAGE_ONLY
                else paragraphs_html("Our winter catalogue is out.", f"<p>{snippet}</p>"))
        data = make("alternative", "Winter catalogue", "Our winter catalogue is out.", counter(), html=html)
        out(name, data, rule.split(".")[0], rule, "html link")
    for name, negative_for, snippet in LEGIT_LINKS:
        html = paragraphs_html("Our winter catalogue is out.", f"<p>{snippet}</p>")
        data = make("alternative", "Winter catalogue", "Our winter catalogue is out.", counter(), html=html)
        out(name, data, "legit", note="html link", negative_for=negative_for)
    for name, rule, extra in HEADERS:
        out(name, make("plain", "Hello", "Thanks for being a customer. Our opening hours stay the same.", counter(),
                       extra=extra), "headers", rule)
    for name, cat, rule, subject, text, shape in MORE_POSITIVES:
        out(name, make(shape, subject, text, counter()), cat, rule, shape)
    for name, negative_for, subject, text, shape in MORE_NEGATIVES:
        out(f"legit-{name}", make(shape, subject, text, counter()), "legit", note=shape, negative_for=negative_for)
    for name, cat, rule, subject, text, shape in RULES4_POSITIVES:
        out(name, make(shape, subject, text, counter()), cat, rule, shape)
    for name, negative_for, subject, text, shape in RULES4_NEGATIVES:
        out(f"legit-{name}", make(shape, subject, text, counter()), "legit", note=shape, negative_for=negative_for)


def css_split_html(text: str) -> str:
    """The text with a filler span at its first "|", hidden by a stylesheet class, not inline."""
    before, after = text.split("|", 1)
    return ("<!DOCTYPE html>\n<html><head><style>.sp { display: none; } p { margin: 0; }</style></head>\n"
            f"<body><p>Hello,</p><p>{html_mod.escape(before)}<span class=\"sp\">zqx</span>{html_mod.escape(after)}</p>"
            "</body></html>\n")


def image_html(shape: str, text: str) -> str:
    """Legitimate mail with images: described by alt text, a logo beside real text, a tracking pixel."""
    if shape == "image-alt":
        body = ('<p><img src="https://demo.example/menu.png" width="600" alt="Our winter menu: lentil soup, '
                'beef stew and apple crumble"></p>')
    elif shape == "image-logo":
        body = f'<p><img src="https://demo.example/logo.png" width="120"></p><p>{html_mod.escape(text)}</p>'
    else:
        body = (f'<p>{html_mod.escape(text)}</p><img src="https://demo.example/o.gif" width="1" height="1">')
    return f"<!DOCTYPE html>\n<html><body>{body}</body></html>\n"


def toml_labels(labels: dict[str, dict[str, str]]) -> str:
    lines = ["# Generated by make_corpus.py: expected verdict per corpus message.",
             "# expect = \"legit\" (must pass) or a category (must be refused by that rule).",
             "# The corpus runs with these content settings (see tests/test_content.py):",
             "[settings]", 'operator_domains = ["relay-operator.example"]',
             'operator_addresses = ["abuse@relay-operator.example"]', ""]
    for fname, entry in labels.items():
        lines.append(f'["{fname}"]')
        for k, v in entry.items():
            lines.append(f'{k} = "{v}"')
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    found = write_all()
    (HERE / "labels.toml").write_text(toml_labels(found), encoding="utf-8")
    legit = sum(1 for e in found.values() if e["expect"] == "legit")
    print(f"wrote {len(found)} messages ({legit} legitimate, {len(found) - legit} violations) to {HERE}")
