"""Generation ids: ULID layout and the derived per-surface ids."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

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


def test_ulid_random_part_is_the_next_ten_bytes_of_the_pool() -> None:
    # The characters encode exactly the 80 random bits that were read (no bits lost or repeated
    # by the 2-character table), across a refill of the read-ahead pool.
    ulids = [new_ulid() for _ in range(600)]
    randoms = [_decode(ulid) & (2**80 - 1) for ulid in ulids]
    assert len(set(randoms)) == len(randoms)
    assert any(value >> 72 for value in randoms) and any(value & 0xFF for value in randoms)


def test_ulids_made_on_several_threads_never_share_random_bytes() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda _: [new_ulid() for _ in range(2_000)], range(8)))
    randoms = [_decode(ulid) & (2**80 - 1) for batch in batches for ulid in batch]
    assert len(set(randoms)) == len(randoms) == 16_000


def test_a_forked_child_does_not_repeat_its_parents_random_bytes() -> None:
    new_ulid()  # the parent's pool holds bytes it has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids, then leave without running the test session's exit
        os.close(read)
        os.write(write, ",".join(new_ulid() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode().split(",")
    os.waitpid(pid, 0)
    parent = [new_ulid() for _ in range(50)]
    child_randoms = {_decode(ulid) & (2**80 - 1) for ulid in child}
    assert len(child) == 50
    assert not child_randoms & {_decode(ulid) & (2**80 - 1) for ulid in parent}
