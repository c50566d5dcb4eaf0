"""Footer identity and templates checked at load: `config-check` and `serve` refuse bad ones in one line; footer languages."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from filters.footer import FooterValues, reason_for, render_footer
from relay.mail.footer_lang import from_header, guess, language_for
from relay.mail.identity_check import contact_email_problem, postal_address_problem
from test_cli_and_demo import DEMO, RELAY, run_relay

GOOD_TEXT = ("Sent by {{ company }} <{{ contact_email }}>\n{{ postal_address }}\n{{ reason }}\n"
             "{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}{% endif %}\n")
GOOD_HTML = ('Sent by {{ company }} &lt;<a href="mailto:{{ contact_email }}">{{ contact_email }}</a>&gt;<br>\n'
             '{{ postal_address }}<br>\n{{ reason }}\n'
             '{% if unsubscribe_url %}<br><a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}\n')

# (what the client wrote, the key named, words the one line must hold)
BAD_IDENTITIES = [
    ('postal_address = "n/a"', "clients.demo.postal_address", "street line"),
    ('postal_address = "Demo Shop Ltd, Springfield, USA"', "clients.demo.postal_address", "house number"),
    ('postal_address = "Demo Shop Ltd, 1 Example Street, Springfield, Nowhere-land 9"',
     "clients.demo.postal_address", "not a country"),
    ('contact_email = "nobody@nonexistent.invalid"', "clients.demo.contact_email", "nonexistent.invalid"),
    ('contact_email = "nobody@elsewhere.example"', "clients.demo.contact_email", "sender domains"),
    ('contact_email = "nobody@nonexistent.invalid"\ncontact_email_external = true',
     "clients.demo.contact_email", "not a valid address"),
]
# (text template, HTML template, words the one line must hold); None: the default template
BAD_TEMPLATES = [
    ("{{ company }} {{ postal_address }} {{ contact_email }} {{ reason }}\n", None, "unsubscribe URL"),
    (GOOD_TEXT.replace("{{ postal_address }}", ""), None, "postal address"),
    (GOOD_TEXT.replace(" <{{ contact_email }}>", ""), None, "contact email"),
    (GOOD_TEXT.replace("{{ reason }}", ""), None, "reason line"),
    (None, GOOD_HTML.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', "{{ unsubscribe_url }}"),
     "unsubscribe URL as a link"),
    (None, GOOD_HTML.replace("{{ postal_address }}<br>", '<span style="display:none">{{ postal_address }}</span>'),
     "not visible"),
    (None, GOOD_HTML.replace("{{ reason }}", "<!-- {{ reason }} -->"), "reason line"),
    (None, "<table><tr><td>" + GOOD_HTML + "</td></tr></table>", "<table>"),
    (None, GOOD_HTML + "<div>", "leaves elements open"),
    ("{% if %}", None, "line 1"),
]


def demo_with(tmp: Path, *replacements: tuple[str, str]) -> None:
    text = DEMO.read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    (tmp / "relay.toml").write_text(text)


def one_line_failure(tmp: Path, command: str = "config-check") -> str:
    result = run_relay("--config", "relay.toml", command, cwd=tmp)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("setting, key, words", BAD_IDENTITIES)
def test_config_check_refuses_a_weak_identity(tmp_path, setting, key, words):
    name = setting.split(" =", 1)[0]
    old = {"postal_address": 'postal_address = "Demo Shop Ltd, 1 Example Street, Springfield, IL 62701, USA"',
           "contact_email": 'contact_email = "hello@demo.example"'}[name]
    demo_with(tmp_path, (old, setting))
    line = one_line_failure(tmp_path)
    assert key in line and words in line, line


def test_an_external_contact_address_needs_saying_so(tmp_path):
    old = 'contact_email = "hello@demo.example"'
    demo_with(tmp_path, (old, 'contact_email = "care@support-desk.com"'))
    assert "contact_email_external" in one_line_failure(tmp_path)
    demo_with(tmp_path, (old, 'contact_email = "care@support-desk.com"\ncontact_email_external = true'))
    assert run_relay("--config", "relay.toml", "config-check", cwd=tmp_path).returncode == 0


def write_templates(d: Path, text: str | None, html: str | None, lang: str = "") -> Path:
    d.mkdir(exist_ok=True)
    infix = f".{lang}" if lang else ""
    if text is not None:
        (d / f"footer{infix}.txt.j2").write_text(text)
    if html is not None:
        (d / f"footer{infix}.html.j2").write_text(html)
    return d


@pytest.mark.parametrize("text, html, words", BAD_TEMPLATES)
def test_config_check_refuses_a_bad_client_template(tmp_path, text, html, words):
    write_templates(tmp_path / "tpl", text, html)
    demo_with(tmp_path, ('default_list = "news"', 'default_list = "news"\nfooter_templates = "tpl"'))
    line = one_line_failure(tmp_path)
    assert "clients.demo.footer_templates" in line and words in line, line
    assert "footer." in line  # names the template file


def test_per_list_and_translated_templates_are_checked_too(tmp_path):
    write_templates(tmp_path / "news", GOOD_TEXT, GOOD_HTML)
    write_templates(tmp_path / "news", GOOD_TEXT.replace("{{ reason }}", ""), None, lang="de")
    demo_with(tmp_path, ("max_consent_age_days = 730\n", 'max_consent_age_days = 730\nfooter_templates = "news"\n'))
    line = one_line_failure(tmp_path)
    assert "clients.demo.lists.news.footer_templates" in line and "footer.de.txt.j2" in line, line
    assert "reason line" in line
    (tmp_path / "news" / "footer.de.txt.j2").write_text(GOOD_TEXT)
    result = run_relay("--config", "relay.toml", "config-check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_good_templates_pass_and_a_transactional_only_client_needs_no_unsubscribe(tmp_path):
    write_templates(tmp_path / "tpl", GOOD_TEXT, GOOD_HTML)
    demo_with(tmp_path, ('default_list = "news"', 'default_list = "news"\nfooter_templates = "tpl"'))
    assert run_relay("--config", "relay.toml", "config-check", cwd=tmp_path).returncode == 0
    no_unsubscribe = GOOD_TEXT.replace("{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}{% endif %}", "")
    write_templates(tmp_path / "receipts", no_unsubscribe, None)
    demo_with(tmp_path, ('kind = "transactional"\n', 'kind = "transactional"\nfooter_templates = "receipts"\n'))
    assert run_relay("--config", "relay.toml", "config-check", cwd=tmp_path).returncode == 0


def test_serve_refuses_the_same_in_one_line(tmp_path):
    demo_with(tmp_path, ('postal_address = "Demo Shop Ltd, 1 Example Street, Springfield, IL 62701, USA"',
                         'postal_address = "n/a"'))
    result = subprocess.run([*RELAY, "--config", "relay.toml", "serve"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "clients.demo.postal_address" in lines[0], result.stderr


@pytest.mark.parametrize("address", [
    "Acme Inc, 1 Main St, Springfield, IL 62701, USA",
    "Beta GmbH, Hauptstr. 1, 10115 Berlin, Germany",
    "Gamma Ltd, 9 Quay St, Leeds LS1 1AA, UK",
    "Delta SARL, 12 rue de la Paix, 75002 Paris, France",
    "Épsilon SL, Calle Mayor 5, 28013 Madrid, España",
    "Zeta Ltd, PO Box 77, Springfield 62701, US",
    "Eta AG; Postfach 1020; 8000 Zürich; CH",
])
def test_real_postal_addresses_pass(address):
    assert postal_address_problem(address) is None


@pytest.mark.parametrize("address", ["n/a", "TBD", "Springfield", "1 Main St, USA", "Acme, Main Street, Springfield, USA",
                                     "Acme, 1 Main St, Springfield, n/a", "Acme, 1 Main St, Springfield, 12345"])
def test_fake_postal_addresses_fail(address):
    assert postal_address_problem(address) is not None


def test_contact_email_rule():
    domains = ("acme.example",)
    assert contact_email_problem("hello@acme.example", domains, False) is None
    assert contact_email_problem("hello@news.acme.example", domains, False) is None
    assert "sender domains" in contact_email_problem("hello@other.example", domains, False)
    assert contact_email_problem("care@support-desk.com", domains, True) is None
    assert contact_email_problem("nobody@nonexistent.invalid", domains, True) is not None
    assert contact_email_problem("not an address@acme.example", domains, False) is not None


def test_language_from_header_and_text():
    assert from_header("de-AT, en") == "de" and from_header("pt-BR") is None and from_header(None) is None
    assert guess("Bonjour, voici nos offres du printemps pour vous et votre jardin. Les graines sont dans la "
                 "boutique avec des outils pour le jardin.") == "fr"
    assert guess("Hola, estas son nuestras ofertas de primavera para su jardín. Las semillas y las herramientas "
                 "están en la tienda con un descuento para los clientes.") == "es"
    assert guess("<p>Liebe Leserin, die neuen Angebote sind da und wir freuen uns auf Ihren Besuch mit der "
                 "Familie.</p>", html=True) == "de"
    assert guess("Hi") is None
    assert language_for(None, [("Hi", False)]) == "en"
    assert language_for("es", [("Liebe Leserin, die neuen Angebote sind da und wir", False)]) == "es"


@pytest.mark.parametrize("lang, words", [("de", ("Gesendet von", "abmelden", "angemeldet")),
                                          ("fr", ("Envoyé par", "désabonner", "abonné")),
                                          ("es", ("Enviado por", "baja", "suscribió")),
                                          ("en", ("Sent by", "Unsubscribe", "subscribed"))])
def test_translated_footers(lang, words):
    from filters.footer import ConsentFacts

    consent = ConsentFacts("2026-01-02", "form", "single", False, None)
    values = FooterValues("Acme Inc", "hello@acme.example", "Acme Inc, 1 Main St, Springfield, IL 62701, USA",
                          "Acme News", False, reason_for("Acme News", "Acme Inc", False, consent, lang),
                          "https://r.example/u/T", "unsubscribe+T@r.example", consent)
    text, html = render_footer(values, lang=lang)
    for word in words:
        assert word in text and word in html.replace("&#39;", "'")
