"""Policy stages: each module decides (check) or transforms (apply); order comes from [policy] stages."""
from filters.verdict import CONTINUE, Action, Verdict

__all__ = ["CONTINUE", "Action", "Verdict"]
