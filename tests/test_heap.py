"""The start-up heap frozen out of the cyclic collector's walks (relay.base.loop_guard), in a process of its own."""
from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import gc, weakref
    from relay.base.loop_guard import refreeze, settle_heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        return a

    start_up = [cycle() for _ in range(50_000)]   # what a configuration holds
    old_config = cycle()
    gone = weakref.ref(old_config)
    frozen = settle_heap()
    assert frozen >= 100_000, frozen
    del old_config  # a reload drops the old configuration: a cycle among the frozen objects
    gc.collect()
    assert gone() is not None, "frozen garbage is not collected until refreeze"
    again = refreeze()
    assert gone() is None, "refreeze handed the old configuration back to the collector"
    assert again >= 100_000 and gc.get_freeze_count() == again
    print(frozen, again)
""")


def test_settle_heap_freezes_start_up_and_refreeze_lets_the_old_configuration_go():
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    frozen, again = done.stdout.split()
    assert int(frozen) - int(again) >= 2  # the old configuration's two objects
