"""DKIM for the copies of one message: the body and header work every copy shares is done once."""
from __future__ import annotations

import threading
from typing import NamedTuple

from relay.mail.dkim import BodyHasher, DkimSigner, body_hash, canon_lines

__all__ = ["FanoutSigning", "shared_ranges"]

# Below this a body is hashed whole per copy: the search costs about what it saves.
MIN_BODY = 2048
# Shared runs shorter than this are left to the per-copy pass (each costs a find and a compare).
MIN_SEGMENT = 256
# A message whose copies share more runs than this is not worth the bookkeeping (nor the search).
MAX_SEGMENTS = 64
# Bytes of a shared run looked for in each copy: enough that footer text does not match by chance
# (and a chance match is caught by the full comparison that follows).
HEAD = 96


class _Segment(NamedTuple):
    raw: bytes    # a run of the message body: starts a line, ends with CRLF, no bare CR or LF
    canon: bytes  # its relaxed canonical lines
    head: bytes   # raw[:HEAD]


def _common_length(a: bytes, i: int, b: bytes, j: int) -> int:
    """How many bytes a[i:] and b[j:] have in common at their start (C compares, no Python loop per byte)."""
    n = min(len(a) - i, len(b) - j)
    view = memoryview(a)
    lo, step = 0, 4096
    while lo < n and b.startswith(view[i + lo:i + min(n, lo + step)], j + lo):
        lo = min(n, lo + step)
        step *= 2
    if lo >= n:
        return n
    hi = min(n, lo + step)  # a[i+lo:i+hi] differs somewhere: bisect for the first byte that does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if b.startswith(view[i + lo:i + mid], j + lo):
            lo = mid
        else:
            hi = mid
    return lo if a[i + lo] != b[j + lo] else lo + 1


def _line_start(data: bytes, at: int) -> bool:
    return at == 0 or data.startswith(b"\r\n", at - 2)


def shared_ranges(base: bytes, copy: bytes) -> list[tuple[int, int]]:
    """Line-aligned ranges of `base` that appear, in order, in `copy`: the parts of a message
    body that a stage which only inserts (a footer) left alone. Any answer is safe: each copy
    is checked byte for byte against the ranges before they count (FanoutSigning)."""
    ranges: list[tuple[int, int]] = []
    i = j = 0
    while i < len(base) and j <= len(copy) and len(ranges) < MAX_SEGMENTS:
        n = _common_length(base, i, copy, j)
        end = i + n
        cut = base.rfind(b"\r\n", i, end) + 2  # after the last whole line of the run
        if cut - i >= MIN_SEGMENT:
            ranges.append((i, cut))
        if end >= len(base):
            break
        # the copy differs inside base's line at `end` (or just before it): base resumes in the copy
        # at a later line start, after what was inserted
        k = end if _line_start(base, end) else base.find(b"\r\n", end) + 2
        if k <= 1 or k >= len(base):
            break
        at = copy.find(base[k:k + HEAD], j + n)
        if at < 0 or not _line_start(copy, at):
            break
        i, j = k, at
    return ranges


class FanoutSigning:
    """Signs the copies of one message with one DkimSigner; `sign` is DkimSigner.sign's.

    Per message, from the first copy: the runs of the body every copy keeps as is (all but the
    footers' neighbourhood), canonicalized once, and the hash state after the leading run, which
    each copy continues from a `hashlib` copy. Per copy: each run is found and compared (memcmp),
    only the bytes between runs are canonicalized, and the canonical header values the copies
    share come from one cache. A copy that does not match is hashed whole, as without fan-out.
    Thread-safe: copies are signed in the signing threads.
    """

    def __init__(self, signer: DkimSigner, body: bytes) -> None:
        self.signer = signer
        self.base = body
        self.canon_cache: dict[bytes, bytes] = {}
        self._segments: list[_Segment] | None = None
        self._prefix: BodyHasher | None = None  # after the first segment, when it starts the body
        self._lock = threading.Lock()

    def sign(self, header_lines: list[bytes], body: bytes, now: int) -> list[bytes]:
        return self.signer.sign(header_lines, body, now, body_digest=self.body_hash(body),
                                canon_cache=self.canon_cache)

    def body_hash(self, body: bytes) -> bytes:
        if len(self.base) < MIN_BODY:
            return body_hash(body)
        if self._segments is None:
            with self._lock:
                if self._segments is None:
                    self._plan(body)
        segments = self._segments
        assert segments is not None
        if not segments:
            return body_hash(body)
        pos = 0
        first = 0
        if self._prefix is not None:
            if not body.startswith(segments[0].raw):
                return body_hash(body)
            hasher, pos, first = self._prefix.copy(), len(segments[0].raw), 1
        else:
            hasher = BodyHasher()
        for seg in segments[first:]:
            at = body.find(seg.head, pos)
            if at < 0 or not _line_start(body, at) or not body.startswith(seg.raw, at):
                return body_hash(body)
            if not hasher.feed(body[pos:at]):
                return body_hash(body)
            hasher.feed_canonical(seg.canon)
            pos = at + len(seg.raw)
        if not hasher.feed(body[pos:]):
            return body_hash(body)
        return hasher.digest()

    def _plan(self, first_copy: bytes) -> None:
        segments = []
        for start, end in shared_ranges(self.base, first_copy):
            raw = self.base[start:end]
            pairs = raw.count(b"\r\n")
            if raw.count(b"\r") != pairs or raw.count(b"\n") != pairs:
                continue  # a bare CR or LF: body_hash's one-piece path decides what it means
            segments.append((start, _Segment(raw, canon_lines(raw), raw[:HEAD])))
        self._prefix = None
        if segments and segments[0][0] == 0:
            prefix = BodyHasher()
            prefix.feed_canonical(segments[0][1].canon)
            self._prefix = prefix
        self._segments = [seg for _, seg in segments]
