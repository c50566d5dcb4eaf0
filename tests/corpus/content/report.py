"""Run the content corpus through the content stage and print precision and recall per category.

    .venv/bin/python tests/corpus/content/report.py [--failures]

Each message goes through `filters.content.check` with the demo configuration (relay/demo.toml,
stage "content" added, client "demo") and the content settings of labels.toml [settings]. A message
is predicted "legit" when the stage lets it pass, else the category of the rule that refused it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
import tempfile
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
sys.path.insert(0, str(ROOT))

from filters import content  # noqa: E402
from filters.context import MessageContext, Services  # noqa: E402
from relay.config import ClientConfig, Config, load_config  # noqa: E402
from relay.mail.message import Message  # noqa: E402


def load_labels() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    data = tomllib.loads((HERE / "labels.toml").read_text("utf-8"))
    settings = data.pop("settings", {})
    return settings, data


def with_content(config: Config, operator: dict[str, Any] | None = None,
                 clients: dict[str, dict[str, Any]] | None = None) -> Config:
    """The same configuration with other [policy.content] / [clients.X.content] tables."""
    clients = clients or {}
    new_clients = {name: dataclasses.replace(c, content=clients.get(name, {})) for name, c in config.clients.items()}
    return dataclasses.replace(config, clients=new_clients, content=operator or {})


def demo_config(directory: Path) -> Config:
    demo = (ROOT / "relay" / "demo.toml").read_text("utf-8")
    # only the stages a dry run needs without a consent database: the content stage and who sent it
    demo = re.sub(r"(?m)^stages = .*$", 'stages = ["sender-identity", "content"]', demo)
    path = directory / "relay.toml"
    path.write_text(demo, "utf-8")
    return load_config(path)


def context(config: Config, client: ClientConfig, raw: bytes) -> MessageContext:
    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    return MessageContext(config, client, client.lists.get(client.default_list or ""), "news@demo.example",
                          ("reader@example.org",), Message(raw), Services(clock=lambda: now), "CORPUS")


def evaluate(config: Config, client_name: str = "demo") -> list[dict[str, str]]:
    """One row per corpus message: file, expected category and rule, predicted category and rule, reason."""
    settings, labels = load_labels()
    client = config.clients[client_name]
    rows = []
    for fname, label in labels.items():
        raw = (HERE / fname).read_bytes()
        verdict = asyncio.run(content.check(context(config, client, raw)))
        if verdict.refuses:
            rule = verdict.rule.removeprefix("content.")
            predicted = rule.split(".", 1)[0]
        else:
            rule, predicted = "", "legit"
        rows.append({"file": fname, "expect": label["expect"], "expect_rule": label.get("rule", ""),
                     "predicted": predicted, "rule": rule, "reason": verdict.reason, "note": label.get("note", ""),
                     "negative_for": label.get("negative_for", "")})
    return rows


def table(rows: list[dict[str, str]]) -> str:
    """Per category: positives (messages labelled with it), negatives (legitimate messages that share its
    vocabulary, `negative_for`), and how the stage did on them."""
    negatives: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        for cat in filter(None, r.get("negative_for", "").split(",")):
            negatives.setdefault(cat, []).append(r)
    categories = sorted(({r["expect"] for r in rows} | {r["predicted"] for r in rows} | set(negatives)) - {"legit"})
    lines = [f"{'category':15} {'pos':>4} {'neg':>4} {'TP':>4} {'FP':>4} {'FN':>4} {'neg FP':>6} {'precision':>9} "
             f"{'recall':>7}"]
    for cat in categories + ["legit"]:
        tp = sum(1 for r in rows if r["expect"] == cat and r["predicted"] == cat)
        fp = sum(1 for r in rows if r["expect"] != cat and r["predicted"] == cat)
        fn = sum(1 for r in rows if r["expect"] == cat and r["predicted"] != cat)
        n = sum(1 for r in rows if r["expect"] == cat)
        neg = negatives.get(cat, [])
        neg_fp = sum(1 for r in neg if r["predicted"] != "legit")
        precision = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
        recall = f"{tp / (tp + fn):.2f}" if tp + fn else "-"
        lines.append(f"{cat:15} {n:>4} {len(neg) if cat != 'legit' else '':>4} {tp:>4} {fp:>4} {fn:>4} "
                     f"{neg_fp if cat != 'legit' else '':>6} {precision:>9} {recall:>7}")
    right = sum(1 for r in rows if r["expect"] == r["predicted"])
    rules = sum(1 for r in rows if r["expect_rule"] and r["expect_rule"] == r["rule"])
    with_rule = sum(1 for r in rows if r["expect_rule"])
    refused = [r for r in rows if r["predicted"] != "legit"]
    prohibited = [r for r in rows if r["expect"] != "legit"]
    overall_p = sum(1 for r in refused if r["expect"] != "legit") / len(refused) if refused else 1.0
    overall_r = sum(1 for r in prohibited if r["predicted"] != "legit") / len(prohibited) if prohibited else 1.0
    lines.append(f"{len(rows)} messages ({len(prohibited)} violations, {len(rows) - len(prohibited)} legitimate), "
                 f"{right} with the expected verdict; {rules} of {with_rule} refusals by the expected rule; "
                 f"refuse/pass precision {overall_p:.2f}, recall {overall_r:.2f}")
    short = [c for c in categories if sum(1 for r in rows if r["expect"] == c) < 5 or len(negatives.get(c, [])) < 3]
    if short:
        lines.append(f"categories with fewer than 5 positives or 3 negatives: {', '.join(short)}")
    return "\n".join(lines)


def corpus_rows() -> list[dict[str, str]]:
    settings, _ = load_labels()
    with tempfile.TemporaryDirectory() as tmp:
        return evaluate(with_content(demo_config(Path(tmp)), settings))


if __name__ == "__main__":
    rows = corpus_rows()
    print(table(rows))
    wrong = [r for r in rows if r["expect"] != r["predicted"] or (r["expect_rule"] and r["expect_rule"] != r["rule"])]
    if wrong or "--failures" in sys.argv:
        print("\nnot as labelled:")
        for r in wrong:
            print(f"  {r['file']}: expected {r['expect']} {r['expect_rule']}, got {r['predicted']} {r['rule']}: "
                  f"{r['reason']}")
    sys.exit(1 if wrong else 0)
