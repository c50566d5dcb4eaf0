"""Data: the default content rule set (one TOML file per category) and the URL shortener list.

Read by `filters/content/rulefiles.py`; see docs/CONTENT.md for the file format. Not a stage (no NAME).
"""
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent
SHORTENERS_FILE = RULES_DIR / "shorteners.txt"
# word sets every rule file may use as @name (a file's own [sets] win): offer verbs and words in
# the seven languages the rules cover; not a rule file
SHARED_SETS_FILE = RULES_DIR / "shared-sets.toml"


def default_rule_files() -> list[Path]:
    """The shipped rule files, in a stable order."""
    return sorted(p for p in RULES_DIR.glob("*.toml") if p != SHARED_SETS_FILE)
