"""The content scorer (filters/content/scorer.py): features, the model, its settings, and the stage with it."""
from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
from pathlib import Path

import smtplib

import pytest

from conftest import PASSWORD
from filters import content
from filters.content import RuleError, content_settings, scorer
from filters.content.settings import validate_table

CORPUS = Path(__file__).resolve().parent / "corpus" / "content"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("content_corpus_report_scorer", CORPUS / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo(report, tmp_path_factory):
    return report.demo_config(tmp_path_factory.mktemp("scorer-demo"))


def judge(report, config, raw: bytes):
    return asyncio.run(content.check(report.context(config, config.clients["demo"], raw)))


def mail(subject: str, body: str) -> bytes:
    return (f"From: Shop <news@demo.example>\r\nTo: reader@example.org\r\nSubject: {subject}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def toy() -> scorer.Scorer:
    return scorer.Scorer(categories=("alcohol", "gambling"), bias=-2.0,
                         weights={"casino": 30.0, "free spins": 20.0, "s:win": 10.0, "bread": -20.0, "S:caps": 5.0,
                                  "w:gambling/games": 1.0, "r:gambling.casino": 1.0},
                         category_bias=(0.0, 0.0),
                         category_weights={"casino": ((1, 2.0),), "wine": ((0, 2.0),)}, threshold=0.9)


def test_features_are_words_word_pairs_subject_words_and_the_subject_shape():
    feats = scorer.features(" claim your free spins ", " win big ", "WIN BIG TODAY!!")
    assert {"claim", "free", "spins", "claim your", "free spins", "s:win", "s:big", "S:caps", "S:bang"} <= feats
    assert "your claim" not in feats and "spins claim" not in feats
    assert scorer.subject_shape("Our autumn range") == []
    assert scorer.subject_shape("WIN $500 NOW") == ["S:caps", "S:money"]


def test_features_read_only_the_first_words_of_a_long_message():
    stream = " " + " ".join(f"w{n}" for n in range(scorer.MAX_WORDS + 500)) + " "
    feats = scorer.features(stream, "", "")
    assert f"w{scorer.MAX_WORDS - 1}" in feats and f"w{scorer.MAX_WORDS}" not in feats


def test_the_model_refuses_at_its_threshold_and_names_the_category_and_its_evidence():
    model = toy()
    # a message of fewer than FEW_FEATURES features counts as that long: each feature is worth 0.1
    assert scorer.feature_value(3) == scorer.feature_value(scorer.FEW_FEATURES) == 0.1
    assert scorer.feature_value(400) == 0.05
    assert model.judge({"bread", "casino"}) is None                    # -2 + 1: 1 / (1 + e^1) = 0.27
    category, p = model.judge({"casino", "free spins", "s:win"})       # -2 + 6: 0.98
    assert category == "gambling" and 0.98 < p < 0.99
    assert model.judge({"casino", "free spins", "s:win"}, threshold=0.99) is None
    assert model.judge({"casino", "free spins", "s:win", "wine", "wine x"}) is not None
    assert model.evidence({"casino", "free spins", "s:win", "bread", "w:gambling/games", "r:gambling.casino"}) == [
        "casino", "free spins", "win"]  # the message's own words, not the features behind them


def test_a_saved_model_loads_as_it_was_and_the_same_model_gives_the_same_bytes(tmp_path):
    model = toy()
    first, second = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    scorer.save(model, first)
    scorer.save(model, second)
    assert first.read_bytes() == second.read_bytes()
    loaded = scorer.load(first)
    assert loaded == model and loaded.vetoable == frozenset(model.categories) - {"headers"}
    broken = dict(json.loads(gzip.decompress(first.read_bytes())), category_bias=[0.0])
    with pytest.raises(ValueError, match="one category bias per category"):
        scorer.Scorer.from_json(broken)
    assert scorer.load(tmp_path / "missing.json.gz") is None


def test_the_shipped_model_is_there_and_covers_every_product_category():
    model = scorer.load()
    assert model is not None and 0.3 <= model.threshold < 1.0 and 0.0 <= model.veto <= model.threshold
    assert {"pharmacy", "gambling", "counterfeit", "illegal-goods", "mlm", "headers"} <= set(model.categories)
    assert len(model.weights) > 5000


@pytest.mark.parametrize("value, expected", [(True, 0.0), (False, None), (0.95, 0.95)])
def test_the_scorer_setting(report, demo, value, expected):
    config = report.with_content(demo, {"scorer": value})
    assert content_settings(config, config.clients["demo"]).scorer == expected


@pytest.mark.parametrize("value", [1.5, 0.2, "yes", 1])
def test_a_bad_scorer_setting_is_refused_by_name(value):
    with pytest.raises(RuleError, match=r"policy.content.scorer: must be true, false or a probability"):
        validate_table({"scorer": value}, "policy.content")


# -- through real SMTP: what the phrase rules miss, the scorer refuses --------------------------------

# written for this test (not in the corpus or the training mail): offers in ordinary words
REPLICAS = ("New arrivals in the vault", "Our workshop copies the most wanted Swiss timepieces down to the serial "
            "engraving on the caseback. Nobody at the office will ever tell the difference. Sapphire glass, automatic "
            "movement, the green bezel everybody wants. From 149 EUR, sent in a plain box, two weeks to any country. "
            "Reply to this mail with the model you want and we send photos of the piece before it ships.")
TABLES = ("Your seat at the table", "Tonight at nine the wheel spins again. New members get two hundred in chips on "
          "the house and the first three losses back. Play from your phone, cash out the same evening to your card. "
          "Blackjack tables open all night, the jackpot is over fifty thousand this week and every deposit is doubled "
          "until Sunday.")
GARDEN = ("Spring gardening workshop", "Join our head gardener on Saturday for a two-hour workshop on pruning roses "
          "and planting bulbs. Tickets 12 EUR including tea and cake. Book at the garden centre desk or reply to this "
          "email, and bring gloves if you have them. Children are welcome in the play corner while you learn.")


def smtp_send(port: int, subject: str, body: str) -> tuple[int, bytes]:
    data = mail(subject, body).replace(b"demo.example", b"acme.example")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.login("acme", PASSWORD)
        s.mail("bounce@acme.example")
        assert s.rcpt("alice@example.org")[0] == 250
        return s.data(data)


def test_offers_in_ordinary_words_are_refused_by_the_scorer_and_pass_with_it_off(relay_factory, sink):
    sink.clear()
    relay = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "content"]')
    code, text = smtp_send(relay.port, *REPLICAS)
    assert code == 550 and text.startswith(b"5.7.1 content rule counterfeit.scorer (counterfeit goods): "
                                           b'"scored 0.'), text
    code, text = smtp_send(relay.port, *TABLES)
    assert code == 550 and text.startswith(b"5.7.1 content rule gambling.scorer (gambling and sweepstakes)"), text
    assert smtp_send(relay.port, *GARDEN)[0] == 250
    assert len(sink.wait_for(1)) == 1
    relay.stop()
    sink.clear()
    off = relay_factory(upstream=f"smtp://127.0.0.1:{sink.port}", stages='["sender-identity", "content"]',
                        extra="\n[policy.content]\nscorer = false\n")
    for subject, body in (REPLICAS, TABLES):  # what the phrase rules alone let through
        assert smtp_send(off.port, subject, body)[0] == 250
    assert len(sink.wait_for(2)) == 2


def test_recent_judgements_keep_the_last_ones_used():
    recent = scorer.Recent(size=2)
    assert recent.put("a", 1) == 1 and recent.put("b", 2) == 2
    assert recent.get("a") == 1          # "a" is now the most recent
    recent.put("c", 3)                   # so "b" goes
    assert recent.get("b") is None and recent.get("a") == 1 and recent.get("c") == 3


def test_the_same_campaign_text_is_scored_once(report, demo):
    scorer.RECENT._items.clear()
    raw = mail(*TABLES)
    first = judge(report, demo, raw)
    assert first.refuses and first.rule == "content.gambling.scorer"
    assert len(scorer.RECENT._items) == 1
    again = judge(report, demo, raw.replace(b"reader@example.org", b"other@example.org"))
    assert again.reason == first.reason and len(scorer.RECENT._items) == 1
