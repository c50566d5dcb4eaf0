"""The start-up heap frozen out of the cyclic collector's walks (relay.base.heap), in processes of their own."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import gc, weakref
    from relay.base.heap import settle_heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        return a

    start_up = [cycle() for _ in range(50_000)]   # what a configuration holds
    garbage = cycle()
    gone = weakref.ref(garbage)
    del garbage                                    # a garbage cycle left from start-up: collected first
    frozen = settle_heap()
    assert gone() is None, "the collection before the freeze took the garbage"
    assert frozen >= 100_000, frozen
    assert gc.get_count()[0] < 100                 # nothing left young: every survivor is frozen
    plain = Node()                                 # frozen, then dropped: freed by its reference count
    later = weakref.ref(plain)
    settle_heap()
    del plain
    assert later() is None
    reloaded = [cycle() for _ in range(5_000)]     # what a reload compiles
    again = settle_heap()
    assert again >= frozen + 10_000, (frozen, again)
    print(frozen, again)
""")


def run(program: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_settle_heap_freezes_what_is_alive_and_again_after_a_reload():
    done = run(PROGRAM, {"RELAY_GC_FREEZE": "1"})
    assert done.returncode == 0, done.stderr


def test_relay_gc_freeze_0_leaves_the_heap_alone():
    program = "import gc\nfrom relay.base.heap import settle_heap\nprint(settle_heap(), gc.get_freeze_count())"
    done = run(program, {"RELAY_GC_FREEZE": "0"})
    assert done.returncode == 0 and done.stdout.split() == ["0", "0"], done.stderr
