"""Judge a blind held-out set (kept outside the repository) with the content stage, as report.py judges the corpus.

    .venv/bin/python tests/corpus/content/heldout.py DIR [--list] [--no-scorer]

DIR holds the messages and `labels.csv` with the columns file, label (prohibited | legit),
category, language (file relative to DIR). Prints recall and precision of refuse/pass; `--list`
also names every miss and false alarm (category and language only: whoever writes rules should
not read the messages, or the set stops measuring anything). `--no-scorer`: the phrase rules alone.
"""
from __future__ import annotations

import asyncio
import csv
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent.parent))
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from filters import content  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    directory = Path(argv[0])
    rows = list(csv.DictReader((directory / "labels.csv").open(encoding="utf-8")))
    settings, _ = report.load_labels()
    if "--no-scorer" in argv:
        settings = {**settings, "scorer": False}
    tp = fp = fn = tn = 0
    named = 0  # refusals that name the labelled category
    by_scorer = 0  # refusals by the content scorer (rule <category>.scorer)
    wrong: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = report.with_content(report.demo_config(Path(tmp)), settings)
        client = config.clients["demo"]
        for row in rows:
            verdict = asyncio.run(content.check(report.context(config, client, (directory / row["file"]).read_bytes())))
            prohibited = row["label"] == "prohibited"
            if verdict.refuses and prohibited:
                tp += 1
                named += verdict.rule.removeprefix("content.").split(".")[0] == row["category"]
                by_scorer += verdict.rule.endswith(".scorer")
            elif verdict.refuses:
                fp += 1
                wrong.append(f"false alarm {row['file']}: {row['category']} ({row['language']}), {verdict.rule}")
            elif prohibited:
                fn += 1
                wrong.append(f"miss {row['file']}: {row['category']} ({row['language']})")
            else:
                tn += 1
    recall = tp / (tp + fn) if tp + fn else 1.0
    precision = tp / (tp + fp) if tp + fp else 1.0
    print(f"{len(rows)} messages: recall {recall:.3f}, precision {precision:.3f} (TP {tp}, FN {fn}, FP {fp}, TN {tn}); "
          f"{named} of {tp} refusals name the labelled category, {by_scorer} by the scorer")
    if "--list" in argv:
        print("\n".join(wrong))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
