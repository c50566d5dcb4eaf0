"""`relay consent / suppress / audit` as an admin runs them: real subprocesses against a real database."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from storage import Store, upgrade

RELAY = [sys.executable, "-m", "relay"]
DEMO = Path(__file__).resolve().parent.parent / "relay" / "demo.toml"


class Admin:
    """Runs `relay --config relay.toml ...` in a temp directory, as a subprocess."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.dir, self.db_url = tmp, db_url
        text = DEMO.read_text()
        assert 'url = "sqlite:///relay.db"' in text
        # a list of our own, so the demo's settings can change without changing these tests
        text = text.replace('url = "sqlite:///relay.db"', f'url = "{db_url}"') + (
            '\n[clients.demo.lists.vip]\nname = "VIP offers"\nkind = "marketing"\nconfirmed_opt_in = true\n')
        (tmp / "relay.toml").write_text(text)

    def _cmd(self, args: tuple[str, ...]) -> list[str]:
        return [*RELAY, "--config", "relay.toml", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._cmd(args), cwd=self.dir, capture_output=True, text=True, timeout=120)

    def many(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
        """Run commands that do not depend on each other side by side (keeps the module quick)."""
        procs = [subprocess.Popen(self._cmd(c), cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for c in commands]
        out = []
        for cmd, p in zip(commands, procs):
            stdout, stderr = p.communicate(timeout=120)
            out.append(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr))
        return out

    def write(self, name: str, text: str) -> str:
        (self.dir / name).write_text(text, encoding="utf-8")
        return name

    def store(self) -> Store:
        upgrade(self.db_url)
        return Store(self.db_url)


@pytest.fixture
def admin(tmp_path: Path, fresh_database_url: Callable[[], str]) -> Admin:
    return Admin(tmp_path, fresh_database_url())


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode != 0, (result.args, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (result.args, result.stderr)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def summary(out: str) -> dict[str, int]:
    counts = {}
    for label in ("rows read", "added", r"already on file \(unchanged\)", "refused",
                  "entries read", "already suppressed"):
        m = re.search(rf"^\s*{label}:\s+([\d,]+)$", out, re.M)
        if m:
            counts[label.split("\\")[0].strip()] = int(m.group(1).replace(",", ""))
    return counts


CONSENT_CSV = """\
email,signed_up_at,source,method,ip,disclosure,confirmed_at,plan
alice@Example.COM,2025-01-02T03:04:05Z,https://shop.example/signup,double,192.0.2.1,Weekly news and offers,2025-01-02T04:00:00+00:00,pro
bob@example.com,2025-02-01,checkout,single,,,,basic
carol@example.com,2025-03-01 10:00,form,double,2001:db8::1,News,,
not-an-address,2025-01-01,form,single,,,,
Sales+promo@example.com,2025-01-01,form,single,,,,
dave@example.com,,form,single,,,,
erin@example.com,2025-01-01,,single,,,,
frank@example.com,yesterday,form,single,,,,
gina@example.com,2025-01-01,form,triple,,,,
alice@example.com,2025-01-05,form,single,,,,
hank@example.com,2025-01-05,form,double,,,2025-01-04,
ivan@example.com,2025-01-05,form,single,10.0.0.300,,,
judy@example.com,2025-01-05,form

kate@example.com,2999-01-01,form,single,,,,
,2025-01-01,form,single,,,,
"""
# line number → (what the refusal names, part of the reason)
EXPECTED_REFUSALS = {
    5: ("not-an-address", "@-sign"),
    6: ("Sales+promo@example.com", "role address (sales@)"),
    7: ("dave@example.com", "signed_up_at is empty"),
    8: ("erin@example.com", "source is empty"),
    9: ("frank@example.com", "signed_up_at 'yesterday' is not an ISO 8601 date/time"),
    10: ("gina@example.com", "method 'triple' is not single or double"),
    11: ("alice@example.com", "duplicate of line 2"),
    12: ("hank@example.com", "confirmed_at 2025-01-04 is before signed_up_at 2025-01-05"),
    13: ("ivan@example.com", "ip '10.0.0.300' is not an IP address"),
    14: ("judy@example.com", "has 3 fields, the header has 8"),
    16: ("kate@example.com", "is in the future"),
    17: ("(empty)", "email is empty"),
}


def test_consent_import_refuses_with_line_and_reason_and_reimport_changes_nothing(admin: Admin) -> None:
    admin.write("list.csv", CONSENT_CSV)
    out = ok(admin("consent", "import", "list.csv", "--client", "demo", "--list", "vip",
                   "--refused-out", "refused.csv"))
    assert summary(out) == {"rows read": 15, "added": 3, "already on file": 0, "refused": 12}, out
    for line, (who, reason) in EXPECTED_REFUSALS.items():
        assert re.search(rf"^\s*line {line}: {re.escape(who)}: .*{re.escape(reason)}", out, re.M), (line, out)
    assert "line 2:" not in out and "line 3:" not in out and "line 4:" not in out
    # a confirmed_opt_in list: the operator is told what will not be mailed yet
    assert "pending until confirmed" in out and "single opt-in" in out
    with open(admin.dir / "refused.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["line"]) for r in rows] == sorted(EXPECTED_REFUSALS)
    assert all(r["reason"] for r in rows)

    store = admin.store()
    try:
        records = {a: store.consent_records("demo", a) for a in
                   ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com")}
    finally:
        store.close()
    (alice, alice_events), = records["alice@example.com"]
    assert (alice.status, alice.method, alice.source, alice.ip) == (
        "confirmed", "double", "https://shop.example/signup", "192.0.2.1")
    assert alice.signed_up_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert alice.confirmed_at == datetime(2025, 1, 2, 4, tzinfo=timezone.utc)
    assert json.loads(alice.extra) == {"plan": "pro"}
    assert [e.event for e in alice_events] == ["created"]
    (bob, _), = records["bob@example.com"]
    assert (bob.status, bob.method, bob.confirmed_at) == ("confirmed", "single", None)
    assert bob.signed_up_at == datetime(2025, 2, 1, tzinfo=timezone.utc)  # a date without offset is UTC
    (carol, _), = records["carol@example.com"]
    assert (carol.status, carol.ip) == ("pending", "2001:db8::1")
    assert records["dave@example.com"] == []

    again = ok(admin("consent", "import", "list.csv", "--client", "demo", "--list", "vip"))
    assert summary(again) == {"rows read": 15, "added": 0, "already on file": 3, "refused": 12}, again

    shown, missing = admin.many(("consent", "show", "alice@example.com", "--client", "demo"),
                                ("consent", "show", "zed@example.com", "--client", "demo"))
    text = ok(shown)
    for expected in ("demo/vip (VIP offers)", "confirmed", "double", "https://shop.example/signup", "2025-01-02 03:04:05 UTC",
                     "192.0.2.1", "Weekly news and offers", "2025-01-02 04:00:00 UTC", "history:", "created",
                     "import", '"plan": "pro"'):
        assert expected in text, (expected, text)
    assert ok(missing).strip() == "no consent records for zed@example.com at client demo"


def test_consent_import_summary_caps_refusals(admin: Admin) -> None:
    rows = "".join(f"role{i}@example.com,2025-01-01,form,bogus,,\n" for i in range(60))
    admin.write("bad.csv", "email,signed_up_at,source,method,ip,disclosure\n" + rows)
    out = ok(admin("consent", "import", "bad.csv", "--client", "demo", "--list", "news"))
    assert summary(out) == {"rows read": 60, "added": 0, "already on file": 0, "refused": 60}
    assert len(re.findall(r"^\s*line \d+: ", out, re.M)) == 50
    assert "... and 10 more" in out


def test_bad_input_gets_one_line(admin: Admin) -> None:
    admin.write("ok.csv", "email,signed_up_at,source,method,ip,disclosure\nx@example.com,2025-01-01,f,single,,\n")
    admin.write("nosource.csv", "email,signed_up_at,method,ip,disclosure\nx@example.com,2025-01-01,single,,\n")
    admin.write("empty.csv", "")
    results = admin.many(
        ("consent", "import", "ok.csv", "--client", "nobody", "--list", "news"),
        ("consent", "import", "ok.csv", "--client", "demo", "--list", "nolist"),
        ("consent", "import", "nosource.csv", "--client", "demo", "--list", "news"),
        ("consent", "import", "empty.csv", "--client", "demo", "--list", "news"),
        ("consent", "import", "ok.csv", "--list", "news"),
        ("consent", "import", "missing.csv", "--client", "demo", "--list", "news"),
        ("consent", "show", "not an address", "--client", "demo"),
        ("suppress", "add", "x@example.com", "--global", "--client", "demo"),
        ("suppress", "add", "x@example.com"),
        ("suppress", "add", "x@example.com", "--list", "news"),
        ("suppress", "add", "@example.com", "--client", "demo", "--list", "news"),
        ("suppress", "add", "x@example.com", "--global", "--reason", "whim"),
        ("suppress", "add", "@not_a_domain", "--global"),
        ("suppress", "export", "--client", "demo", "--since", "last tuesday"),
        ("audit", "export", "--client", "nobody"),
    )
    one_line_error(results[0], "unknown client 'nobody'", "demo")
    one_line_error(results[1], "unknown list 'nolist'", "news")
    one_line_error(results[2], "missing column 'source'")
    one_line_error(results[3], "empty file")
    one_line_error(results[4], "--client")
    one_line_error(results[5], "missing.csv")
    one_line_error(results[6], "not an address")
    one_line_error(results[7], "--global and --client")
    one_line_error(results[8], "--global", "--client")
    one_line_error(results[9], "--list needs --client")
    one_line_error(results[10], "@domain", "not for one list")
    one_line_error(results[11], "--reason", "whim")
    one_line_error(results[12], "@not_a_domain")
    one_line_error(results[13], "--since", "ISO 8601")
    one_line_error(results[14], "unknown client 'nobody'")
    store = admin.store()
    try:
        assert store.suppressions() == []  # nothing half-done
        assert store.consent_records("demo", "x@example.com") == []
    finally:
        store.close()


def test_suppress_add_remove_list_import_export(admin: Admin) -> None:
    added = admin.many(
        ("suppress", "add", "Bob@Example.COM", "--client", "demo", "--list", "news", "--reason", "unsubscribe"),
        ("suppress", "add", "@Spam.Example.org", "--global", "--reason", "do-not-contact"),
        ("suppress", "add", "@partner.example", "--client", "demo", "--reason", "complaint", "--source", "ticket-42"),
    )
    # stored (and shown) with the local part case-folded: suppressions match it in any case
    assert "suppressed bob@example.com (list demo/news, unsubscribe)" in ok(added[0])
    assert "suppressed @spam.example.org (global, do-not-contact)" in ok(added[1])
    assert "suppressed @partner.example (client demo, complaint)" in ok(added[2])
    again = ok(admin("suppress", "add", "BOB@example.com", "--client", "demo", "--list", "news"))
    assert "bob@example.com was already suppressed" in again

    admin.write("dnc.txt", "# do not contact, from the CRM\n\nann@example.com\n@blocked.example.net\n"
                           "not-an-address\nann@example.com\nBob@example.com\nAnn@Example.com\n")
    out = ok(admin("suppress", "import", "dnc.txt", "--client", "demo"))
    assert summary(out) == {"entries read": 6, "added": 3, "already suppressed": 0, "refused": 3}, out
    assert re.search(r"line 5: not-an-address: .*@-sign", out)
    assert "line 6: ann@example.com: duplicate of line 3" in out
    assert "line 8: Ann@Example.com: duplicate of line 3" in out
    out = ok(admin("suppress", "import", "dnc.txt", "--client", "demo"))
    assert summary(out)["added"] == 0 and summary(out)["already suppressed"] == 3

    everything, client_list, news_only, global_only, csv_out, jsonl_out, late = admin.many(
        ("suppress", "list"),
        ("suppress", "list", "--client", "demo"),
        ("suppress", "list", "--client", "demo", "--list", "news"),
        ("suppress", "list", "--global"),
        ("suppress", "export", "--client", "demo"),
        ("suppress", "export", "--client", "demo", "--list", "news", "--format", "jsonl", "--since", "2020-01-01"),
        ("suppress", "export", "--client", "demo", "--since", "2999-01-01T00:00:00Z"),
    )
    assert "6 suppression(s)" in ok(everything)
    assert "5 suppression(s)" in ok(client_list) and "@spam.example.org" not in client_list.stdout
    assert "1 suppression(s)" in ok(news_only) and "bob@example.com" in news_only.stdout
    assert "1 suppression(s)" in ok(global_only) and "@spam.example.org" in global_only.stdout

    exported = list(csv.DictReader(io.StringIO(ok(csv_out))))
    assert {(r["address"], r["scope"], r["list"], r["reason"]) for r in exported} == {
        ("bob@example.com", "list", "news", "unsubscribe"),
        ("@partner.example", "client", "", "complaint"),
        ("ann@example.com", "client", "", "do-not-contact"),
        ("@blocked.example.net", "client", "", "do-not-contact"),
        ("bob@example.com", "client", "", "do-not-contact"),
    }
    assert set(exported[0]) == {"address", "scope", "list", "reason", "source", "at"}
    assert all(datetime.fromisoformat(r["at"]).tzinfo is not None for r in exported)
    assert [r["source"] for r in exported if r["address"] == "@partner.example"] == ["ticket-42"]
    lines = [json.loads(x) for x in ok(jsonl_out).splitlines()]
    assert len(lines) == 5 and {x["list"] for x in lines} == {"news", None}  # client-wide + this list
    assert ok(late).strip() == "address,scope,list,reason,source,at"

    removed = ok(admin("suppress", "remove", "@spam.example.org", "--global"))
    assert "removed the suppression of @spam.example.org (global)" in removed
    missing = ok(admin("suppress", "remove", "@spam.example.org", "--global"))
    assert "was not suppressed" in missing
    removed = ok(admin("suppress", "remove", "BOB@Example.com", "--client", "demo", "--list", "news"))
    assert "removed the suppression of bob@example.com (list demo/news)" in removed


def test_audit_export_merges_decisions_and_consent_events(admin: Admin) -> None:
    admin.write("list.csv", "email,signed_up_at,source,method,ip,disclosure\n"
                            "amy@example.com,2025-01-01T00:00:00Z,form,single,192.0.2.7,News\n")
    ok(admin("consent", "import", "list.csv", "--client", "demo", "--list", "news"))
    ok(admin("suppress", "add", "@spam.example.org", "--global"))
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    store = admin.store()
    try:
        store.record_decisions([
            {"at": old, "client": "demo", "list_key": "news", "recipient": "amy@example.com", "stage": "consent",
             "rule": "consent.missing", "verdict": "reject", "code": 550, "status": "5.7.1",
             "reason": "no consent", "message_id": "<m1@demo.example>", "queue_id": "Q1"},
            {"client": "demo", "list_key": "news", "recipient": "amy@example.com", "stage": "deliver",
             "rule": "upstream", "verdict": "deliver", "code": 250, "queue_id": "Q2"},
            {"client": "other", "recipient": "zz@example.com", "stage": "consent", "rule": "consent.missing",
             "verdict": "reject", "queue_id": "Q3"},
        ])
    finally:
        store.close()

    as_csv, as_jsonl, with_global, recent = admin.many(
        ("audit", "export", "--client", "demo"),
        ("audit", "export", "--client", "demo", "--format", "jsonl"),
        ("audit", "export", "--client", "demo", "--include-global", "--format", "jsonl"),
        ("audit", "export", "--client", "demo", "--since", "2021-01-01"),
    )
    rows = list(csv.DictReader(io.StringIO(ok(as_csv))))
    assert [(r["kind"], r["queue_id"] or r["event"]) for r in rows] == [
        ("decision", "Q1"), ("consent", "created"), ("decision", "Q2")]
    assert rows[0]["rule"] == "consent.missing" and rows[0]["code"] == "550" and rows[0]["status"] == "5.7.1"
    assert rows[1]["address"] == "amy@example.com" and rows[1]["ip"] == "192.0.2.7"
    assert rows[1]["consent_status"] == "confirmed" and rows[1]["channel"] == "import"
    times = [datetime.fromisoformat(r["at"]) for r in rows]
    assert times == sorted(times)
    records = [json.loads(x) for x in ok(as_jsonl).splitlines()]
    assert [(r["kind"], r["address"]) for r in records] == [(r["kind"], r["address"]) for r in rows]
    assert records[0]["code"] == 550 and records[1]["detail"] and json.loads(records[1]["detail"])["source"] == "form"
    assert all(r["client"] == "demo" for r in records)
    records = [json.loads(x) for x in ok(with_global).splitlines()]
    assert [(r["client"], r["address"], r["verdict"]) for r in records if r["client"] == "*"] == [
        ("*", "@spam.example.org", "suppress")]
    assert len(records) == 4
    assert [r["kind"] for r in csv.DictReader(io.StringIO(ok(recent)))] == ["consent", "decision"]


@pytest.mark.parametrize("given, canonical", [
    ("198.51.100.7", "198.51.100.7"), ("2001:DB8:0:0::1", "2001:db8::1"), ("::ffff:192.0.2.1", "::ffff:c000:201"),
    ("010.1.1.1", None), ("1.2.3", None), ("256.1.1.1", None), ("1.2.3.4.5", None), ("example.org", None),
])
def test_sign_up_ip_is_stored_in_canonical_form(given, canonical):
    from relay.cli.consent import canonical_ip

    if canonical is None:
        with pytest.raises(ValueError):
            canonical_ip(given)
    else:
        assert canonical_ip(given) == canonical


# -- found by the CLI audit: each of these failed before its fix -----------------------------------

def test_every_command_says_a_storage_failure_in_one_line(tmp_path: Path) -> None:
    """An unopenable database (here: a SQLite file in a directory that does not exist) is one line
    naming storage.url in every command, never a traceback (consent add/export/repermission and
    check printed SQLAlchemy's)."""
    from relay.config import load_config
    from relay.keys import ensure_demo_secrets

    admin = Admin(tmp_path, f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'relay.db'}")
    ensure_demo_secrets(load_config(tmp_path / "relay.toml"))  # what `relay serve` makes on its first run
    admin.write("ok.csv", "email,signed_up_at,source,method,ip,disclosure\nx@example.com,2025-01-01,f,single,,\n")
    admin.write("m.eml", "From: news@demo.example\nTo: x@example.com\nSubject: hi\n\nhello\n")
    results = admin.many(
        ("consent", "add", "x@example.com", "--client", "demo", "--list", "news", "--source", "phone"),
        ("consent", "export", "--client", "demo", "--list", "news"),
        ("consent", "repermission", "--client", "demo", "--list", "news"),
        ("consent", "import", "ok.csv", "--client", "demo", "--list", "news"),
        ("consent", "show", "x@example.com", "--client", "demo"),
        ("suppress", "list"),
        ("audit", "export", "--client", "demo"),
        ("check", "m.eml", "--client", "demo"),
    )
    for result in results:
        assert "Traceback" not in result.stderr, (result.args, result.stderr[-400:])
        one_line_error(result, "storage.url", "unable to open database file")


def test_a_schema_newer_than_this_relay_is_named(admin: Admin) -> None:
    ok(admin("suppress", "list"))
    store = admin.store()
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    finally:
        store.close()
    for result in admin.many(("suppress", "list"), ("consent", "export", "--client", "demo", "--list", "news")):
        one_line_error(result, "9999_from_the_future", "newer")


def test_reads_do_not_wait_for_a_held_sqlite_write_lock(admin: Admin) -> None:
    """Read-only commands read beside a writer (WAL); a write that cannot get the lock says so in one
    line. Before: every command began with a write-locked migration check, so `suppress list`
    failed with 'cannot open the database: database is locked' while an import or a relay wrote."""
    if not admin.db_url.startswith("sqlite"):
        pytest.skip("SQLite's single writer lock")
    import sqlite3

    ok(admin("suppress", "add", "held@example.com", "--global"))
    holder = sqlite3.connect(admin.db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
        listed, shown, audited, write = admin.many(
            ("suppress", "list", "--global"),
            ("consent", "show", "held@example.com", "--client", "demo"),
            ("audit", "export", "--client", "demo", "--include-global"),
            ("suppress", "add", "new@example.com", "--global"),
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "held@example.com" in ok(listed)
    assert "suppressed (global" in ok(shown)
    assert "held@example.com" in ok(audited)
    one_line_error(write, "database is busy")


def test_consent_import_refuses_a_transactional_list(admin: Admin) -> None:
    """`consent add` refuses a transactional list (nobody subscribes to receipts); import did not."""
    admin.write("ok.csv", "email,signed_up_at,source,method,ip,disclosure\nx@example.com,2025-01-01,f,single,,\n")
    one_line_error(admin("consent", "import", "ok.csv", "--client", "demo", "--list", "receipts"),
                   "list receipts is transactional")
    store = admin.store()
    try:
        assert store.consent_records("demo", "x@example.com") == []
    finally:
        store.close()


def test_consent_export_imports_into_a_fresh_database_with_the_same_records(
        tmp_path: Path, fresh_database_url: Callable[[], str]) -> None:
    """export → import gives the same records and provenance: the export's `address` column, the
    extra columns, user agent, last contact, and a revoked record stays revoked (before: the
    import wanted `email`, extras were not exported, and a revoked row came back as consent)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Admin(tmp_path / "a", fresh_database_url()), Admin(tmp_path / "b", fresh_database_url())
    first.write("list.csv", "email,signed_up_at,source,method,ip,disclosure,confirmed_at,plan\n"
                            "amy@example.com,2025-01-01T10:00:00Z,form,double,192.0.2.7,News,2025-01-01T11:00:00Z,pro\n"
                            "ben@example.com,2025-02-01,checkout,single,,,,basic\n"
                            "cat@example.com,2025-03-01,fair,double,,Offers,,\n"
                            "dan@example.com,2025-04-01,form,single,,,,\n")
    ok(first("consent", "import", "list.csv", "--client", "demo", "--list", "vip"))
    store = first.store()
    try:
        store.consent_revoke("demo", "vip", "dan@example.com", datetime(2025, 5, 1, tzinfo=timezone.utc), "page")
        store.touch_last_contact("demo", "vip", ["amy@example.com"], datetime(2025, 6, 1, tzinfo=timezone.utc))
        before = {a: store.consent_records("demo", a)[0][0] for a in
                  ("amy@example.com", "ben@example.com", "cat@example.com", "dan@example.com")}
    finally:
        store.close()
    exported = ok(first("consent", "export", "--client", "demo", "--list", "vip"))
    second.write("export.csv", exported)
    out = ok(second("consent", "import", "export.csv", "--client", "demo", "--list", "vip"))
    assert summary(out) == {"rows read": 4, "added": 4, "already on file": 0, "refused": 0}, out
    store = second.store()
    try:
        after = {a: store.consent_records("demo", a)[0][0] for a in before}
    finally:
        store.close()
    fields = ("status", "method", "source", "signed_up_at", "ip", "disclosure", "confirmed_at",
              "last_contact_at", "revoked_at", "user_agent")
    for address, old in before.items():
        new = after[address]
        assert {f: getattr(new, f) for f in fields} == {f: getattr(old, f) for f in fields}, address
        kept = json.loads(new.extra)
        assert {k: v for k, v in kept.items() if k != "history"} == json.loads(old.extra or "{}"), address
        assert "created via import" in kept["history"]  # the old trail is kept with the record
    assert after["dan@example.com"].status == "revoked"


def test_suppress_export_imports_into_a_fresh_database_with_the_same_entries(
        tmp_path: Path, fresh_database_url: Callable[[], str]) -> None:
    """`suppress export` → `suppress import --client C` gives the same entries, scope, reason and
    source (before: the import read one address per line, so every line of the CSV was refused)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Admin(tmp_path / "a", fresh_database_url()), Admin(tmp_path / "b", fresh_database_url())
    for args in (("bob@example.com", "--client", "demo", "--list", "news", "--reason", "unsubscribe"),
                 ("@partner.example", "--client", "demo", "--reason", "complaint", "--source", "ticket-42"),
                 ("ann@example.com", "--client", "demo", "--reason", "bounce")):
        ok(first("suppress", "add", *args))
    second.write("export.csv", ok(first("suppress", "export", "--client", "demo")))
    out = ok(second("suppress", "import", "export.csv", "--client", "demo"))
    assert summary(out) == {"entries read": 3, "added": 3, "already suppressed": 0, "refused": 0}, out

    def entries(admin: Admin) -> set[tuple[str, str, str, str, str]]:
        rows = csv.DictReader(io.StringIO(ok(admin("suppress", "export", "--client", "demo"))))
        return {(r["address"], r["scope"], r["list"], r["reason"], r["source"]) for r in rows}

    assert entries(second) == entries(first)
    again = ok(second("suppress", "import", "export.csv", "--client", "demo"))
    assert summary(again)["already suppressed"] == 3
