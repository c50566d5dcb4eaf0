"""The content stage's text side by its former single module's name: its public names, from the modules that hold them."""
from __future__ import annotations

# folding (filters/content/folding.py), word tokens (tokens.py), phrase matching (phrases.py) and
# where the rule words occur (wordindex.py) were one module; code that imports them from here
# still can
from filters.content.folding import fold  # noqa: F401
from filters.content.phrases import Phrase, Step, evidence, first_hits, match, pivot  # noqa: F401
from filters.content.tokens import SEP, _Normaliser  # noqa: F401
from filters.content.wordindex import WordIndex  # noqa: F401
