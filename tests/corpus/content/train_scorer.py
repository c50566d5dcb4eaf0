"""Train the content scorer (filters/content/rules/scorer.json.gz) on the corpus and the training mail.

    .venv/bin/python tests/corpus/content/train_scorer.py [--precision 0.985] [--threshold T --veto V] [--folds 5] [--dry-run]

Data: the corpus (labels.toml; link, operator and image cases are left out: their text is ordinary,
what is wrong is a link or an address, which rules judge) and every `train/*.jsonl` (one message a
line: label, category, language, subject, text, html). Each message becomes features exactly as the
relay makes them (`filters.content.message_features` on the reader view and the rule hits), so what is learnt is
what the relay sees.

Model: multinomial logistic regression over "legit" and the categories, trained by AdaGrad with an
L2 penalty, a fixed seed and features seen in at least two messages. The threshold (how likely a
message must be prohibited to be refused) is chosen on out-of-fold predictions: the lowest at which
the rules and the scorer together keep `--precision` on the training data. Prints that table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
import tempfile
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent.parent))
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from filters import content  # noqa: E402
from filters.content import scorer  # noqa: E402
from filters.content.settings import _settings_and_rules  # noqa: E402

RULE_ONLY = {"links", "operator", "images"}


def eml(row: dict[str, Any]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Newsletter <news@demo.example>"
    msg["To"] = "reader@example.org"
    msg["Subject"] = row["subject"]
    text, html = row.get("text") or "", row.get("html") or ""
    if text and html:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or " ")
    return bytes(msg)


# how make_corpus.py names the variants of one corpus message (its encodings and disguises)
VARIANTS = ("hidden-text", "hidden-split", "css-split", "plain", "leet", "fullwidth", "zerowidth", "homoglyph",
            "subject", "alt", "entities", "spaced", "dotted", "legacy", "qp", "html", "alternative", "base64",
            "misspelt")
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "ja")


def group_of(name: str, cls: str) -> str:
    """The messages that must fall in the same fold: one writer's file of training mail (its
    messages share turns of phrase, prohibited and legitimate alike), and the variants and
    translations of one corpus message (`087-pharmacy-buy-plain`, `-leet` ...; `r4-tobacco-it`,
    `-nl`, `-it-2` ...). Folds that split them judge a message by a model that saw its twin, and
    the threshold chosen on them is too bold for mail nobody here wrote (blind set 4: precision
    0.943 where the folds promised 0.981)."""
    if ":" in name:  # train/<file>.jsonl:<line>
        return name.split(":")[0]
    stem = re.sub(r"-\d+$", "", re.sub(r"^\d+-", "", name.removesuffix(".eml")))
    for variant in VARIANTS:
        if stem.endswith("-" + variant):
            stem = stem[:-len(variant) - 1]
            break
    return re.sub(r"-(?:%s)$" % "|".join(LANGUAGES), "", stem)


def messages() -> list[tuple[str, str, bytes]]:
    """(name, class, raw) of every training message."""
    _, labels = report.load_labels()
    out = [(name, label["expect"], (HERE / name).read_bytes()) for name, label in labels.items()
           if label["expect"] not in RULE_ONLY]
    for path in sorted((HERE / "train").glob("*.jsonl")):
        for n, line in enumerate(path.read_text("utf-8").splitlines()):
            if line.strip():
                row = json.loads(line)
                cls = "legit" if row["label"] == "legit" else row["category"]
                if cls not in RULE_ONLY:
                    out.append((f"{path.name}:{n + 1}", cls, eml(row)))
    return out


def featurise(config: Any, rows: list[tuple[str, str, bytes]]) -> list[tuple[set[str], str, str]]:
    """(features, class, the category the rules alone refuse it for, or "") per message."""
    client = config.clients["demo"]
    _, rules = _settings_and_rules(config, client)
    out = []
    for _, cls, raw in rows:
        ctx = report.context(config, client, raw)
        verdict = asyncio.run(content.check(ctx))
        refused = verdict.rule.removeprefix("content.").split(".")[0] if verdict.refuses else ""
        view = content.text_view(ctx)  # (built by the check above)
        found = rules.scan(content.visible_blocks(view, content.senders(ctx)))  # as scan_message finds them
        out.append((content.message_features(view, scorer.leading_text(view.visible), rules, found), cls, refused))
    return out


def train(docs: list[tuple[set[str], int, int]], classes: int, epochs: int = 20, rate: float = 0.4,
          l2: float = 1e-4, seed: int = 7, fixed_bias: float | None = None) -> tuple[list[float], dict[str, list[float]]]:
    """Logistic regression by AdaGrad: multinomial over `classes`, or with classes == 1 a binary
    one (label 1 or 0), each class weighed by the inverse of its share (so legitimate mail counts
    as much as prohibited mail however many of each there are). Returns the biases and each
    feature's weights."""
    weights: dict[str, list[float]] = {}
    squares: dict[str, list[float]] = {}
    width = classes
    bias, bias_sq = [fixed_bias or 0.0] * width, [1e-8] * width
    order = list(range(len(docs)))
    rng = random.Random(seed)
    count_of = Counter(y for _, y, _ in docs)
    balance = {y: len(docs) / (len(count_of) * n) for y, n in count_of.items()}
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            feats, y, count = docs[i]
            rows = [(weights.setdefault(f, [0.0] * width), squares.setdefault(f, [1e-8] * width))
                    for f in feats]
            value = scorer.feature_value(count)  # (count: before rare features were left out, as the relay counts)
            scores = bias[:]
            for row, _ in rows:
                for k in range(width):
                    scores[k] += row[k] * value
            if width == 1:
                grad = [1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, scores[0])))) - y]
            else:
                top = max(scores)
                exps = [math.exp(v - top) for v in scores]
                total = sum(exps)
                grad = [e / total for e in exps]
                grad[y] -= 1.0
            grad = [g * balance[y] for g in grad]
            active = [k for k in range(width) if abs(grad[k]) > 1e-4]
            for k in active if fixed_bias is None else ():
                bias_sq[k] += grad[k] * grad[k]
                bias[k] -= rate * grad[k] / math.sqrt(bias_sq[k])
            for row, sq in rows:
                for k in active:
                    g = grad[k] * value + l2 * row[k]
                    sq[k] += g * g
                    row[k] -= rate * g / math.sqrt(sq[k])
    return bias, weights


def binary_score(bias: list[float], weights: dict[str, list[float]], feats: set[str], count: int) -> float:
    score = bias[0] + sum(weights[f][0] for f in feats if f in weights) * scorer.feature_value(count)
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, score))))


def model(categories: list[str], binary: tuple[list[float], dict[str, list[float]]],
          multi: tuple[list[float], dict[str, list[float]]], threshold: float, veto: float,
          floor: float = 0.01, per_category: int = 600) -> scorer.Scorer:
    weights = {f: row[0] for f, row in binary[1].items() if abs(row[0]) >= floor}
    # softmax does not change when one feature's weights all move by the same amount: each row is
    # moved by its median, and only the strongest evidence for each category is kept (this model
    # only picks the category of mail the first one flags, so what speaks for a category is enough)
    strongest: dict[int, list[tuple[float, str]]] = {}
    for f, row in multi[1].items():
        middle = sorted(row)[len(row) // 2]
        for k, w in enumerate(row):
            if w - middle >= 0.05:
                strongest.setdefault(k, []).append((w - middle, f))
    rows: dict[str, list[tuple[int, float]]] = {}
    for k, pairs in strongest.items():
        for w, f in sorted(pairs, reverse=True)[:per_category]:
            rows.setdefault(f, []).append((k, w))
    rows = {f: tuple(sorted(r)) for f, r in rows.items()}
    return scorer.Scorer(tuple(categories), binary[0][0], weights, tuple(multi[0]), rows, threshold, veto)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--precision", type=float, default=0.985)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--bias", type=float, default=0.0,
                        help="the prohibited model's bias, fixed (a message with little to go on is judged by it)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="use this threshold instead of choosing one (the shipped model: 0.58)")
    parser.add_argument("--veto", type=float, default=None, help="with --threshold: this veto (the shipped model: 0.30)")
    parser.add_argument("--out", type=Path, default=scorer.MODEL_FILE)
    parser.add_argument("--list", action="store_true", help="name the out-of-fold false alarms")
    parser.add_argument("--dry-run", action="store_true", help="print the table, do not write the model")
    args = parser.parse_args(argv)
    settings, _ = report.load_labels()
    rows = messages()
    with tempfile.TemporaryDirectory() as tmp:
        config = report.with_content(report.demo_config(Path(tmp)), {**settings, "scorer": False})
        data = featurise(config, rows)
    frequency = Counter(f for feats, _, _ in data for f in feats)
    categories = sorted({cls for _, cls, _ in data} - {"legit"})
    vetoable = set(categories) - {"headers"}
    index = {c: n for n, c in enumerate(categories)}
    feats = [{f for f in fs if frequency[f] >= 2} for fs, _, _ in data]
    prohibited = [cls != "legit" for _, cls, _ in data]
    counts = [len(fs) for fs, _, _ in data]
    binary = [(fs, int(p), n) for fs, p, n in zip(feats, prohibited, counts)]
    multi = [(fs, index[cls], n) for fs, (_, cls, _), n in zip(feats, data, counts) if cls != "legit"]
    print(f"{len(data)} messages, {len(categories)} categories, "
          f"{sum(1 for n in frequency.values() if n >= 2)} features", file=sys.stderr)
    # out-of-fold: each message judged by a model that did not see it
    oof = [0.0] * len(data)
    groups = sorted({group_of(name, cls) for name, cls, _ in rows})
    fold_of = {g: n % args.folds for n, g in enumerate(random.Random(11).sample(groups, len(groups)))}
    for n in range(args.folds):
        held = {i for i, (name, cls, _) in enumerate(rows) if fold_of[group_of(name, cls)] == n}
        fold = train([d for i, d in enumerate(binary) if i not in held], 1, args.epochs, l2=args.l2,
                     fixed_bias=args.bias)
        for i in held:
            # (what the relay does: too few features, no say)
            oof[i] = binary_score(*fold, feats[i], counts[i]) if counts[i] >= scorer.MIN_FEATURES else -1.0
        print(f"fold {n + 1}/{args.folds}", file=sys.stderr)
    by_rules = [refused for _, _, refused in data]
    print(f"rules alone: recall {sum(bool(r) and p for p, r in zip(prohibited, by_rules)) / sum(prohibited):.3f}, "
          f"false alarms {sum(bool(r) and not p for p, r in zip(prohibited, by_rules))} "
          f"of {len(data) - sum(prohibited)} legitimate")
    print("threshold  veto   P      R      FPR   (rules and scorer together, out of fold; P at 2:1)")
    best: tuple[float, float, float, float] | None = None
    # veto 1.0 stands for "the same as the threshold": a rule of a category the model knows counts
    # only where the model agrees (its hits are features of the model)
    for veto_option in (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 1.0):
        for t in [x / 100 for x in range(30, 100, 2)]:
            veto = min(veto_option, t)
            decided = [p >= t or (bool(r) and not (r in vetoable and 0 <= p < veto)) for p, r in zip(oof, by_rules)]
            tp = sum(d and p for d, p in zip(decided, prohibited))
            fp = sum(d and not p for d, p in zip(decided, prohibited))
            recall, false_rate = tp / sum(prohibited), fp / (len(data) - sum(prohibited))
            # precision where two messages in three are prohibited (as in the blind sets), not the
            # training data's mix
            precision = 2 * recall / (2 * recall + false_rate) if recall or false_rate else 1.0
            if t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
                print(f"  {t:.2f}     {veto:.2f}   {precision:.3f}  {recall:.3f}  {false_rate:.3f}")
            if precision >= args.precision and (best is None or recall > best[0]):
                best = (recall, precision, t, veto)
    recall, precision, chosen, veto = best or (0.0, 0.0, 0.98, 0.0)
    if args.threshold is not None:  # an operating point fixed by hand (the table above says what it gives)
        chosen, veto = args.threshold, min(args.veto if args.veto is not None else veto, args.threshold)
    if args.list:
        names = [name for name, _, _ in rows]
        for i, (p, r) in enumerate(zip(oof, by_rules)):
            if not prohibited[i] and (p >= chosen or (r and not (r in vetoable and 0 <= p < veto))):
                print(f"false alarm {names[i]} ({data[i][1]}): scorer {p:.2f}, rules {r or '-'}")
        missed = Counter(data[i][1] for i, (p, r) in enumerate(zip(oof, by_rules))
                         if prohibited[i] and p < chosen and not r)
        print("missed (out of fold) by category:", ", ".join(f"{c} {n}" for c, n in missed.most_common()))
    if args.threshold is None:
        print(f"chosen: threshold {chosen:.2f}, veto {veto:.2f} (precision {precision:.3f}, recall {recall:.3f})")
    else:
        print(f"fixed: threshold {chosen:.2f}, veto {veto:.2f} (the table's best at --precision: "
              f"threshold {best[2] if best else '-'}, precision {precision:.3f}, recall {recall:.3f})")
    if not args.dry_run:
        final = model(categories, train(binary, 1, args.epochs, l2=args.l2, fixed_bias=args.bias), train(multi, len(categories)), chosen, veto)
        scorer.save(final, args.out)
        print(f"wrote {args.out}: {len(final.weights)} features, "
              f"{sum(len(r) for r in final.category_weights.values())} category weights")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
