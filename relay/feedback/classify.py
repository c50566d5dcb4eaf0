"""RFC 3463 enhanced status codes → whose fault a failure is: the recipient's (hard), passing (soft), or the sender's."""
from __future__ import annotations

import re

HARD, SOFT, SENDER, NONE = "hard", "soft", "sender", "none"

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"(?<![\d.])([245]\d\d)(?=[ -]|$)")

# Only for reports that give no enhanced code, or the catch-all X.0.0: what the words say.
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|mailbox (does not|doesn't) exist|"
    r"does not exist|invalid (recipient|mailbox|address)|recipient (address )?rejected|address rejected|"
    r"not a valid mailbox|unknown (recipient|mailbox|local part)|no mailbox|mailbox unavailable|"
    r"user not found|user not exist|not exist|invalid (final delivery )?userid|"
    r"account (has been )?(disabled|deleted|closed)|no longer (active|available)|"
    r"host (or domain name )?not found|name service error|domain (does not exist|not found)|"
    r"unrouteable|unroutable|bad destination", re.IGNORECASE)
_SOFT_WORDS = re.compile(r"quota|storage|mailbox (is )?full|over ?quota|insufficient (system )?storage|try again|"
                         r"temporar|deferred|delayed|timed? ?out|greylist", re.IGNORECASE)
_SENDER_WORDS = re.compile(
    r"spam|blocked|block ?list|blacklist|listed|reputation|policy|dmarc|dkim|spf|authenticat|"
    r"not permitted|relay(ing)? (denied|not permitted|access denied)|content|rejected for abuse|"
    r"message (is )?too (big|large)|size limit|virus", re.IGNORECASE)


def find_status(text: str) -> str:
    """The first enhanced status code in a text (a Diagnostic-Code, an SMTP reply), else ""."""
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else ""


def find_reply_code(text: str) -> int | None:
    match = _REPLY.search(text or "")
    return int(match.group(1)) if match else None


def by_status(status: str) -> str | None:
    """The category an RFC 3463 code decides on its own; None for a catch-all (X.0.0 and the like)."""
    try:
        klass, subject, detail = (int(p) for p in status.split("."))
    except ValueError:
        return None
    if klass == 2:
        return NONE
    if subject == 7:
        return SENDER  # X.7.x security or policy: reputation, authentication, content — never the recipient's
    if klass == 4:
        return SOFT
    if subject == 1:
        # X.1.7 / X.1.8: the *sender's* address is bad; every other X.1.x is about the recipient
        return SENDER if detail in (7, 8) else HARD
    if subject == 2:
        return {1: HARD, 2: SOFT, 3: SENDER, 4: SOFT}.get(detail)  # disabled / full / too long / list
    if subject == 3:
        return SENDER if detail == 4 else SOFT  # 5.3.4 message too big for system
    if subject == 4:
        return HARD if detail == 4 else SOFT  # 5.4.4 unable to route: no such domain
    if subject == 5:
        return None  # protocol errors say nothing by themselves; look at the words
    if subject == 6:
        return SENDER  # media/content the receiver will not take
    return None


def classify(status: str, diagnostic: str = "", action: str = "") -> tuple[str, str]:
    """(category, status used). A status decides; the words decide only when it does not.

    Actions `delivered`, `relayed`, `expanded` are no failure at all; `delayed` is soft whatever
    code it carries (RFC 3464 §2.3.3: the MTA is still trying).
    """
    action = action.strip().lower()
    if action in ("delivered", "relayed", "expanded"):
        return NONE, status
    status = status.strip() or find_status(diagnostic)
    if action == "delayed":
        return (SENDER if status.startswith("4.7.") else SOFT), status or "4.0.0"
    decided = by_status(status) if status else None
    if decided is None and status[:1] != "4":
        # a catch-all Status (5.0.0, X.5.x) over a diagnostic that quotes the remote's own, telling code
        for match in _STATUS.finditer(diagnostic or ""):
            inner = ".".join(match.groups())
            if inner[:1] == "5" and by_status(inner) not in (None, NONE):
                status, decided = inner, by_status(inner)
                break
    if decided is not None and decided != NONE:
        return decided, status
    if decided == NONE and action != "failed":
        return NONE, status
    code = find_reply_code(diagnostic)
    klass = status[:1] if status else (str(code)[0] if code else "5")
    if klass == "4":
        return SOFT, status or "4.0.0"
    # a permanent failure without a telling code: the words, then the safe side (soft: counted,
    # and suppressed only after soft_bounce_limit repeats)
    if _SENDER_WORDS.search(diagnostic):
        return SENDER, status or "5.7.0"
    if _HARD_WORDS.search(diagnostic):
        return HARD, status or "5.1.1"
    if _SOFT_WORDS.search(diagnostic):
        return SOFT, status or "5.0.0"
    return SOFT, status or "5.0.0"
