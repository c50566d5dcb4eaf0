"""Persistence for consent-relay: engine set-up, models, migrations and the Store."""

from storage.engine import make_engine
from storage.migrate import current_revision, upgrade
from storage.models import AuditEntry, SpooledCopy, UTCDateTime, utcnow
from storage.store import Store

__all__ = [
    "AuditEntry",
    "SpooledCopy",
    "Store",
    "UTCDateTime",
    "current_revision",
    "make_engine",
    "upgrade",
    "utcnow",
]
