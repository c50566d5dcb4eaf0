"""The content stage's subject rules: false urgency and account threats on marketing lists, all-caps money.

* `headers.urgent-subject`: a subject that threatens the reader's account ("URGENT: Your account
  will be closed today", "Your password expires in 24 hours, verify now") on a list that is not
  transactional. Such a notice may only come from the service that runs the account, as
  transactional mail; a marketing list sending it deceives (CAN-SPAM: no deceptive subject lines).
  Urgency alone ("Last chance: 30% off ends today") is ordinary marketing and passes.
* `headers.money-subject`: a subject in capitals that shouts about money ("MAKE $5,000 A WEEK",
  "FREE CASH NOW"); a discount in capitals ("$10 OFF ALL SHOES") passes.
"""
from __future__ import annotations

import re

from filters.content.folding import fold

_ACCOUNT = r"(?:account|accounts|password|passcode|pin|card|payment|payments|mailbox|e-?mail|apple id|id|profile|login|wallet|bank|banking|konto|compte|cuenta)"
_THREAT = (r"(?:closed|close|closing|closure|suspended|suspend|suspension|locked|lock|lockout|deactivated|deactivate|"
           r"terminated|terminate|termination|disabled|disable|restricted|restrict|blocked|block|deleted|delete|"
           r"compromised|hacked|frozen|freeze|on hold|limited|unusual (?:activity|sign-?in|login)|"
           r"suspicious (?:activity|sign-?in|login)|unauthori[sz]ed|expires?|expired|expiring|"
           r"gesperrt|sperrung|suspendu|bloque|bloqueada|suspendida)")
_URGENT = (r"(?:urgent|urgently|immediate|immediately|action required|action needed|final (?:notice|warning)|"
           r"last (?:warning|notice)|within \d+ ?(?:hours?|hrs?|days?)|in \d+ ?(?:hours?|hrs?)|today|now|asap|"
           r"verify|verification|confirm|re-?activate|dringend|sofort|urgente)")
# an account threat: the account word near a threat word, either order
_THREATENS = re.compile(rf"\b{_ACCOUNT}\b(?:\W+\w+){{0,5}}?\W+{_THREAT}\b|\b{_THREAT}\b(?:\W+\w+){{0,4}}?\W+{_ACCOUNT}\b")
_URGENCY = re.compile(rf"\b{_URGENT}\b")
# "will be closed", "has been suspended": a threat made in the subject itself, urgent without a word for it
_DONE_TO = re.compile(rf"\b(?:will be|has been|have been|is being|was|is|are|got)\s+{_THREAT}\b")

_MONEY = re.compile(r"(?:[$€£]\s?\d[\d,.]*+|\b\d[\d,.]*+\s?(?:dollars|usd|eur|euros|pounds|gbp)\b)(?!\s*(?:off|discount|rabatt|gutschein|voucher|coupon|gift card|rebate|reduction|descuento)\b)"
                    r"|\b(?:cash|money|income|profit|profits|rich|richer|millionaire|millions|fortune|loan|loans|"
                    r"payout|payday|earn|earning|earnings|fast cash|free cash)\b")


# "verify your account within 24 hours": a demand about the account, made urgent
_DEMAND = re.compile(rf"\b(?:verify|confirm|update|validate|re-?activate|secure|unlock|restore)\b(?:\W+\w+){{0,3}}?\W+{_ACCOUNT}\b")
_PRESSING = re.compile(r"\b(?:urgent|urgently|immediate|immediately|action required|action needed|final (?:notice|warning)|"
                       r"last (?:warning|notice)|within \d+ ?(?:hours?|hrs?|days?)|in \d+ ?(?:hours?|hrs?)|today|now|asap|"
                       r"dringend|sofort|urgente)\b")


def urgent_subject(subject: str) -> bool:
    """The subject threatens the reader's account (with urgency, or as a done deed), or demands an
    urgent action on it."""
    text = fold(subject)
    if _THREATENS.search(text):
        return bool(_URGENCY.search(text) or _DONE_TO.search(text))
    return bool(_DEMAND.search(text) and _PRESSING.search(text))


def money_subject(subject: str) -> bool:
    """The subject is in capitals and about money."""
    letters = [c for c in subject if c.isalpha()]
    if len(letters) < 6 or sum(c.isupper() for c in letters) < 0.8 * len(letters):
        return False
    return bool(_MONEY.search(fold(subject)))
