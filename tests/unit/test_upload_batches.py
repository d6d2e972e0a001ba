"""A push's batches: cut into messages of about MESSAGE_BYTES, each chunk's bytes let go once sent."""

from __future__ import annotations

import os

from atelier.datasets.upload import MESSAGE_BYTES, _Batch


def _batch(sizes: list[int]) -> _Batch:
    return _Batch.of([(bytes([index]) * 32, os.urandom(size)) for index, size in enumerate(sizes)])


def test_messages_hold_every_chunk_once_in_order() -> None:
    sizes = [MESSAGE_BYTES // 3] * 7 + [10, MESSAGE_BYTES, 5]
    batch = _batch(sizes)
    expected = list(zip(batch.digests, batch.datas, strict=True))

    messages = list(batch.messages())

    assert [piece for message in messages for piece in message] == expected
    assert all(sum(len(data) for _, data in message) <= 2 * MESSAGE_BYTES for message in messages)
    assert len(messages) < len(sizes)


def test_a_sent_message_is_no_longer_held_by_its_batch() -> None:
    batch = _batch([MESSAGE_BYTES] * 3)
    messages = batch.messages()

    first = next(messages)
    assert batch.datas[0] is first[0][1]
    next(messages)

    assert batch.datas[0] == b""
    assert len(batch.datas[1]) == MESSAGE_BYTES
    assert batch.size == 3 * MESSAGE_BYTES
