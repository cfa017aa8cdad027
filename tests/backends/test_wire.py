"""The frames of Ray calls (``sage_nb.backends.ray.wire``): no Ray needed."""

from __future__ import annotations

from sage_nb.backends.ray.wire import (
    ERROR,
    EXPIRED,
    LARGE,
    OK,
    pack_batch,
    pack_reply,
    unpack_batch,
    unpack_reply,
)


def test_a_small_batch_is_one_bytes_frame() -> None:
    batch = [(1, None, b"a"), (2, 12.5, b"b")]
    args = pack_batch(batch)
    assert len(args) == 1 and type(args[0]) is bytes
    assert unpack_batch(args[0], args[1:]) == batch


def test_large_payloads_travel_beside_the_frame_in_order() -> None:
    first, second = b"x" * (LARGE + 1), b"y" * (LARGE + 2)
    batch = [(1, None, first), (2, None, b"small"), (3, 4.0, second)]
    frame, *large = pack_batch(batch)
    assert large == [first, second]
    assert len(frame) < 200  # the large payloads are not copied into it
    assert unpack_batch(frame, tuple(large)) == batch
    assert batch[0][2] is first  # the caller's list is left as it was


def test_a_reply_with_large_results_is_a_list_of_the_frame_and_them() -> None:
    result = b"r" * (LARGE + 1)
    error = ("ValueError", "bad", "", None)
    entries = [(1, OK, result, 0.5), (2, ERROR, error, 0.1), (3, EXPIRED, None, 0.0)]
    data = pack_reply(7, 2, list(entries))
    assert type(data) is list and data[1] == result and len(data[0]) < 200
    assert unpack_reply(data) == (7, 2, entries)
    small = [(1, OK, b"r", 0.5)]
    data = pack_reply(7, 2, list(small))
    assert type(data) is bytes
    assert unpack_reply(data) == (7, 2, small)
