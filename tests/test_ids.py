"""Generation ids: ULID layout and the derived per-surface ids."""

from __future__ import annotations

import time

from aistats_gateway.ids import derive, new_generation_id, new_ulid, to_generation_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _decode(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_ulid_is_26_crockford_chars_with_the_current_millisecond_on_top() -> None:
    before = time.time_ns() // 1_000_000
    ulid = new_ulid()
    after = time.time_ns() // 1_000_000
    assert len(ulid) == 26 and set(ulid) <= set(CROCKFORD)
    value = _decode(ulid)
    assert value < 2**128
    assert before <= value >> 80 <= after


def test_ulids_are_unique_and_time_ordered_across_milliseconds() -> None:
    first = new_ulid()
    time.sleep(0.002)
    second = new_ulid()
    assert first[:10] < second[:10]
    assert len({new_ulid() for _ in range(10_000)}) == 10_000


def test_derived_ids_map_back_to_the_generation() -> None:
    generation_id = new_generation_id()
    assert generation_id.startswith("gen_")
    for prefix in ("resp_", "msg_", "gen_"):
        assert to_generation_id(derive(generation_id, prefix)) == generation_id
    assert to_generation_id(derive(generation_id, "resp_").lower()) == generation_id


def test_foreign_ids_are_not_ours() -> None:
    assert to_generation_id("chatcmpl-abc") is None
    assert to_generation_id("resp_short") is None
    assert to_generation_id("gen_" + "U" * 26) is None  # U is not in Crockford's alphabet
