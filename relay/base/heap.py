"""The start-up heap kept out of the cyclic garbage collector's walks (gc.freeze), so a full collection is not a stall."""
from __future__ import annotations

import gc
import os

# RELAY_GC_FREEZE=0 leaves the heap as Python keeps it (bench/gc_freeze.py compares the two)
ENV = "RELAY_GC_FREEZE"


def settle_heap() -> int:
    """Collect, then take every object alive now out of the cyclic collector's sight (gc.freeze).

    At start-up that is the configuration, the content rules and scorer and the modules: some
    165,000 objects, which a full collection walked in 82 ms, a stall of every session on the
    loop whenever enough new objects had piled up for one (bench/gc_freeze.py). Afterwards a
    full collection walks only what came later. Frozen objects that become garbage are still
    freed by reference counting; only garbage cycles among them stay, so this runs before the
    first connection (nothing in flight to freeze) and again after a reload (to freeze newly
    compiled rule files; a session's cycles frozen then stay in memory, a few kilobytes a
    connection). Returns how many objects are frozen (0 with RELAY_GC_FREEZE=0).
    """
    if os.environ.get(ENV, "1") == "0":
        return 0
    gc.collect()  # (walks only what is not frozen yet)
    gc.freeze()
    return gc.get_freeze_count()
