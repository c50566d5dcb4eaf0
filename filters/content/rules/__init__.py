"""Data: the default content rule set (one TOML file per category) and the URL shortener list.

Read by `filters/content/rulefiles.py`; see docs/CONTENT.md for the file format. Not a stage (no NAME).
"""
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent
SHORTENERS_FILE = RULES_DIR / "shorteners.txt"


def default_rule_files() -> list[Path]:
    """The shipped rule files, in a stable order."""
    return sorted(RULES_DIR.glob("*.toml"))
