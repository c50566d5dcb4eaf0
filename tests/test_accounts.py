"""Client accounts (SPEC §11) through SMTP and the CLI: states, limits, repeats, canary campaigns,
reputation rules and the transactional promo guard."""
from __future__ import annotations

import datetime as dt
import email
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import PASSWORD, Clock
from relay.cli.main import main as relay_cli

FROZEN = (451, "4.7.1")
REFUSED = (550, "5.7.1")
CORPUS = Path(__file__).resolve().parent / "corpus" / "transactional"


def message(subject: str, body: str, to: str = "ann@example.org", list_id: str | None = None,
            headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Acme <news@acme.example>"
    msg["To"] = to
    msg["Subject"] = subject
    if list_id:
        msg["List-Id"] = list_id
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def send(port: int, data: bytes, rcpts: list[str], sender: str = "news@acme.example") -> tuple[int, str]:
    """The reply to DATA (or the first refusal before it) as (code, text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo()
        s.login("acme", PASSWORD)
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        for r in rcpts:
            code, text = s.rcpt(r)
            if code != 250:
                return code, text.decode()
        code, text = s.data(data)
        return code, text.decode()


def mail_reply(port: int) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo()
        s.login("acme", PASSWORD)
        code, text = s.mail("news@acme.example")
        return code, text.decode()


def cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(relay_cli, ["--config", str(config), *args])
    return result.exit_code, result.output


def status(reply: tuple[int, str]) -> tuple[int, str]:
    return reply[0], reply[1].split()[0]


# --- states ------------------------------------------------------------------------------------

def test_state_change_bites_without_restart_audited_and_mailed(relay_factory, clean_sink):
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}")
    assert mail_reply(relay.port)[0] == 250
    code, out = cli(relay.config_path, "client", "state", "acme", "frozen", "--reason", "complaints from ISP X",
                    "--evidence", "ticket 42")
    assert code == 0, out
    assert "active -> frozen" in out
    deadline = time.monotonic() + 2.0
    while status(mail_reply(relay.port)) != FROZEN:
        assert time.monotonic() < deadline, "the freeze did not bite within 2 s"
        time.sleep(0.1)
    # the client was told, with a signature of its own domain, at its contact address
    notice = clean_sink.wait_for(1)[0]
    assert notice.rcpt_tos == ["hello@acme.example"]
    assert b"DKIM-Signature:" in notice.data and b"complaints from ISP X" in notice.data
    assert cli(relay.config_path, "client", "state", "acme", "suspended", "--reason", "no answer")[0] == 0
    deadline = time.monotonic() + 2.0
    while status(mail_reply(relay.port)) != REFUSED:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "suspended" in mail_reply(relay.port)[1]
    assert cli(relay.config_path, "client", "state", "acme", "active", "--reason", "resolved")[0] == 0
    deadline = time.monotonic() + 2.0
    while mail_reply(relay.port)[0] != 250:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    code, out = cli(relay.config_path, "client", "show", "acme")
    assert code == 0, out
    assert "client acme: active" in out
    assert "active -> frozen  by operator" in out and "[ticket 42]" in out and "suspended -> active" in out
    # the config's `state` is only the starting state: idle starts suspended
    assert "client idle: suspended" in cli(relay.config_path, "client", "show", "idle")[1]
    assert cli(relay.config_path, "client", "state", "acme", "active", "--reason", "again")[1].startswith(
        "acme is already active")
    assert cli(relay.config_path, "client", "state", "nobody", "frozen", "--reason", "x")[0] != 0


# --- volume limits and repeats -------------------------------------------------------------------

LIMITS = """
[policy.limits]
per_minute = 3

[clients.acme.lists.receipts.limits]
per_minute = 2
"""


def test_volume_limits_defer_and_repeats_are_refused(relay_factory, clean_sink):
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}", stages='["sender-identity", "limits"]',
                          extra=LIMITS)
    replies = [send(relay.port, message(f"Receipt {i}", f"Order {i} paid.", list_id="<receipts>"),
                    [f"c{i}@example.org"]) for i in range(3)]
    assert [r[0] for r in replies] == [250, 250, 451], replies  # the list's own limit: 2 a minute
    assert "receipts" in replies[2][1] and replies[2][1].startswith("4.7.1")
    replies = [send(relay.port, message(f"News {i}", f"Issue {i}."), [f"n{i}@example.org"]) for i in range(3)]
    assert [r[0] for r in replies] == [250, 451, 451], replies  # the client's: 3 a minute, 2 already used
    assert "client acme" in replies[1][1]
    assert len(clean_sink.wait_for(3)) == 3


def test_identical_message_to_one_recipient_twice_is_refused(relay_factory, clean_sink):
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}", stages='["sender-identity", "limits"]')
    data = message("Hello", "The same text.")
    assert send(relay.port, data, ["ann@example.org"])[0] == 250
    code, text = send(relay.port, data, ["ann@example.org"])
    assert (code, text.split()[0]) == REFUSED and "already got this message" in text
    assert send(relay.port, data, ["bob@example.org"])[0] == 250  # another recipient
    assert send(relay.port, message("Hello", "Other text."), ["ann@example.org"])[0] == 250


# --- canary ------------------------------------------------------------------------------------

CANARY = """
[policy.canary]
threshold = 20
hold_minutes = 1
"""


def _campaign(relay, label: str, n: int = 100) -> list[tuple[int, str]]:
    data = {i: message("Big news", "Our autumn newsletter.", to=f"r{i}@example.org",
                       headers={"X-Campaign-ID": label, "X-Campaign-Size": str(n)}) for i in range(n)}
    out = []
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        s.ehlo()
        s.login("acme", PASSWORD)
        for i in range(n):
            try:
                s.sendmail("news@acme.example", [f"r{i}@example.org"], data[i])
                out.append((250, "ok"))
            except smtplib.SMTPDataError as exc:
                out.append((exc.smtp_code, exc.smtp_error.decode()))
    return out


@pytest.mark.parametrize("verdict", ["released", "declined"])
def test_canary_campaign_sends_10_holds_90_then_judged(relay_factory, clean_sink, verdict):
    clock = Clock()
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}", stages='["sender-identity", "canary"]',
                          extra=CANARY, clock=clock)
    try:
        _judged_campaign(relay, clean_sink, clock, verdict)
    finally:
        relay.stop()  # its clock runs ahead: its background judge must not see later tests' campaigns


def _judged_campaign(relay, clean_sink, clock, verdict) -> None:
    label = f"autumn-{verdict}"
    first = _campaign(relay, label)
    assert sum(1 for c, _ in first if c == 250) == 10, (first[:3], relay.store.campaigns())
    held = [t for c, t in first if c == 451]
    assert len(held) == 90 and all(t.startswith("4.7.1") and "is held" in t for t in held)
    assert len(clean_sink.wait_for(10)) == 10
    code, out = cli(relay.config_path, "campaign", "list", "--client", "acme")
    assert code == 0 and "holding" in out and label in out, out
    ident = out.split()[0]
    if verdict == "declined":
        # one of the ten canary recipients unsubscribed: 10 % > max_unsubscribe_rate 2 %
        relay.store.suppress_add("list", "acme", "news", "r3@example.org", "", "unsubscribe", "test",
                                 clock())
    clock.offset += dt.timedelta(seconds=61)  # the one-minute hold is over
    results = relay.loop.run(relay.runtime.accounts.judge_due())
    assert results in ([verdict], [])  # the background pass may have judged it first
    deadline = time.monotonic() + 5
    while verdict not in cli(relay.config_path, "campaign", "show", ident)[1]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    notices = [m for m in clean_sink.wait_for(11) if m.rcpt_tos == ["hello@acme.example"]]
    assert len(notices) == 1 and verdict.encode() in notices[0].data
    clean_sink.clear()
    retry = _campaign(relay, label)
    if verdict == "released":
        assert all(c == 250 for c, _ in retry), retry[:3]
    else:
        # everything of a declined campaign is refused, naming it and why
        refused = [t for c, t in retry if c == 550]
        assert len(refused) == 100 and "unsubscribe rate 10.0%" in refused[0] and all(ident in t and "declined" in t for t in refused), refused[:2]


def test_campaign_cli_release_and_decline(relay_factory, clean_sink):
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}", stages='["sender-identity", "canary"]',
                          extra=CANARY)
    _campaign(relay, "winter", n=30)
    ident = cli(relay.config_path, "campaign", "list")[1].split()[0]
    code, out = cli(relay.config_path, "campaign", "release", ident)
    assert code == 0 and "released" in out, out
    assert cli(relay.config_path, "campaign", "release", ident)[0] != 0  # already decided
    assert all(c == 250 for c, _ in _campaign(relay, "winter", n=30)[3:])
    _campaign(relay, "spring", n=30)
    ident2 = [line.split()[0] for line in cli(relay.config_path, "campaign", "list")[1].splitlines()
              if "spring" in line][0]
    code, out = cli(relay.config_path, "campaign", "decline", ident2, "--reason", "looks like a purchased list")
    assert code == 0, out
    late = send(relay.port, message("Big news", "Our autumn newsletter.", to="r29@example.org",
                                    headers={"X-Campaign-ID": "spring", "X-Campaign-Size": "30"}),
                ["r29@example.org"])
    assert status(late) == REFUSED and ident2 in late[1] and "purchased list" in late[1]
    assert cli(relay.config_path, "campaign", "show", "nope")[0] != 0


def test_feedback_id_names_the_campaign_the_relay_counted(relay_factory, clean_sink):
    """Without X-Campaign-ID, the Feedback-ID's campaign part is the id `relay campaign` shows."""
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}", stages='["sender-identity", "canary"]',
                          extra=CANARY)
    assert send(relay.port, message("Big news", "A newsletter with no campaign header."), ["ann@example.org"])[0] == 250
    (copy,) = clean_sink.wait_for(1)
    feedback_id = email.message_from_bytes(copy.data)["Feedback-ID"]
    ident = cli(relay.config_path, "campaign", "list", "--client", "acme")[1].split()[0]
    assert feedback_id.split(":")[:3] == [ident, "news", "acme"], (feedback_id, ident)


# --- reputation ----------------------------------------------------------------------------------

def test_reputation_rules_freeze_only_the_complained_about_client(relay_factory, clean_sink, fresh_database_url):
    relay = relay_factory(f"smtp://127.0.0.1:{clean_sink.port}", db_url=fresh_database_url())
    store = relay.store
    today = dt.datetime.now(dt.timezone.utc).date()
    store.add("acme", "news", today, delivered=1000, complaints=6)       # 0.6 % >= 0.5 %: frozen
    store.add("beta", "news", today, delivered=1000, complaints=0, hard_bounces=60)  # 6 % >= 5 %: warned
    store.add("idle", "news", today, delivered=10, complaints=10)        # under min_volume: nothing
    try:
        _reputation(relay)
    finally:
        relay.stop()  # before its fresh database goes


def _reputation(relay) -> None:
    store = relay.store
    changed = relay.loop.run(relay.runtime.accounts.reputation_pass())
    # the relay's own background pass may have got there first: the states are what counts
    assert set(changed) <= {("acme", "frozen"), ("beta", "warned")}
    assert store.account_states() == {"acme": "frozen", "beta": "warned"}
    assert status(mail_reply(relay.port)) == FROZEN
    out = cli(relay.config_path, "client", "show", "acme")[1]
    assert "by rule:reputation: complaint rate 0.60% >= 0.50%" in out and "6 complaints" in out
    # automatic rules never repeat themselves nor lift a state
    assert relay.loop.run(relay.runtime.accounts.reputation_pass()) == []
    assert cli(relay.config_path, "client", "show", "beta")[1].startswith("client beta: warned")


# --- transactional guard --------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(CORPUS.glob("*/*.eml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_transactional_guard_refuses_promotions_passes_receipts(relay_factory, clean_sink, path):
    relay = _promo_relay(relay_factory, clean_sink)
    assert relay.runtime.accounts.state_of(relay.runtime.config.clients["acme"]) == "active"
    data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    code, text = send(relay.port, data, ["customer@example.org"])
    if path.parent.name == "promotion":
        assert (code, text.split()[0]) == REFUSED and "promo-guard" not in text and "rule promotional." in text
    else:
        assert code == 250, text


_PROMO: dict[int, object] = {}


def _promo_relay(relay_factory, sink):  # one relay for the whole corpus
    if id(relay_factory) not in _PROMO:
        _PROMO[id(relay_factory)] = relay_factory(f"smtp://127.0.0.1:{sink.port}",
                                                  stages='["sender-identity", "promo-guard"]')
    return _PROMO[id(relay_factory)]


# --- storage: one transaction for many messages' steps -------------------------------------------

def test_steps_in_one_transaction_roll_back_one_by_one(store):
    from storage.accounts import CampaignAsk, LimitKey, StepAsk

    now = dt.datetime.now(dt.timezone.utc)
    client = f"steps-{time.monotonic_ns()}"
    limit = [LimitKey("client", "minute", 7, 1)]
    camp = CampaignAsk(f"c-{client}", "news", "label", "subject", None, 5, 5, 60)

    def ask(rcpt: str, with_campaign: bool = False) -> StepAsk:
        return StepAsk(client, [rcpt], [rcpt], now, limit, None, camp if with_campaign else None, "Q")

    # one lock order: steps without a campaign first, so "a" takes the only place this minute
    results = store.account_steps([ask("b@x.org", True), ask("a@x.org")])
    assert results[1].over is None and results[0].over == limit[0] and results[0].campaign is None
    assert store.rate_counts(client, [("client", "minute", 7)]) == {("client", "minute"): 1}
    assert store.campaign(camp.id) is None  # b's step, campaign row included, was rolled back alone
    later = store.account_steps([ask("b@x.org", True)])[0]  # still over: the place is a's
    assert later.over == limit[0]
    results = store.account_steps([StepAsk(client, ["b@x.org"], ["b@x.org"], now, [], None, camp, "Q")])
    assert results[0].campaign["sent"] == 1 and store.campaign(camp.id)["seen"] == 1
