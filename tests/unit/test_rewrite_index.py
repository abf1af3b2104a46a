"""payload-rewrite's edit index against the plain list it replaced: same shifts, same
translated acknowledgements, across sequence wraparound and out-of-order rewrites."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mbtest.middlebox.behaviours.reshape import _Rewrites

MASK = 0xFFFFFFFF


def _before(a: int, b: int) -> bool:
    """a comes before b in sequence space (compared modulo 2**32: a + 1 past the wrap is
    the same number as 0)."""
    return 0 < ((b - a) & MASK) < (1 << 31)


class PlainList:
    """The reference: every edit scanned on every segment."""

    def __init__(self):
        self.edits = []

    def add(self, seq, old, new):
        base = self.edits[0][0] if self.edits else seq
        self.edits.append((seq, old, new))
        self.edits.sort(key=lambda e: (e[0] - base + (1 << 31)) & MASK)  # signed distance

    def shift_before(self, seq):
        return sum(new - old for start, old, new in self.edits if _before(start + old, seq + 1))

    def unshift_ack(self, ack):
        delta = 0
        for start, old, new in self.edits:
            if _before(start + delta + new, ack + 1):
                delta += new - old
        return (ack - delta) & MASK


segments = st.lists(
    st.tuples(st.integers(1, 1400), st.integers(-30, 30), st.booleans()), min_size=1, max_size=60
)


@settings(max_examples=300, deadline=None)
@given(isn=st.integers(0, MASK), segs=segments, swap=st.integers(0, 59))
def test_the_index_agrees_with_the_plain_list(isn, segs, swap):
    order, seq = [], isn
    for length, change, rewritten in segs:
        order.append((seq, length, max(1, length + change), rewritten))
        seq = (seq + length) & MASK
    if swap < len(order) - 1:  # one rewrite seen late (a retransmission after later data)
        order[swap], order[swap + 1] = order[swap + 1], order[swap]
    index, plain = _Rewrites(), PlainList()
    for start, old, new, rewritten in order:
        if rewritten and not index.known(start):
            index.add(start, old, new)
            plain.add(start, old, new)
        assert index.shift_before(start) == plain.shift_before(start)
        end = (start + old) & MASK
        assert index.shift_before(end) == plain.shift_before(end)
    for start, old, _, _ in order:
        for ack in (start, (start + old) & MASK):
            shifted = (ack + plain.shift_before(ack)) & MASK
            assert index.unshift_ack(shifted) == plain.unshift_ack(shifted) == ack


def test_a_retransmission_is_known_and_not_counted_twice():
    index = _Rewrites()
    index.add(MASK - 4, 10, 14)  # across the wrap
    assert index.known(MASK - 4) and not index.known(5)
    assert index.shift_before(5) == 4 and index.shift_before(4) == 0
    assert index.unshift_ack(9) == 5
