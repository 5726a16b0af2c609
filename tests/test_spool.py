"""The on-disk spool: durable appends, oldest-first replay, the size bound, torn and corrupt lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aistats_gateway.settings import ConfigError, WriterSettings, load_settings
from aistats_gateway.store.records import Charge, GenerationRecord
from aistats_gateway.store.spool import Spool, decode_item, encode_item, spool_for

from .test_store import charge_for, make_record


def items(count: int, cost: int = 7) -> list[tuple[GenerationRecord, Charge | None]]:
    made: list[tuple[GenerationRecord, Charge | None]] = []
    for i in range(count):
        record = make_record("ws_test", cost=cost, attempts=[{"provider": "p", "outcome": "ok"}])
        made.append((record, charge_for(record) if i % 2 == 0 else None))
    return made


def replay_all(spool: Spool) -> list[tuple[GenerationRecord, Charge | None]]:
    seen = []
    while (segment := spool.next_segment()) is not None:
        seen += spool.read(segment).items
        spool.remove(segment)
    return seen


def test_a_line_round_trips_a_record_and_its_charge() -> None:
    record, charge = items(1)[0]
    assert decode_item(encode_item(record, charge)) == (record, charge)
    assert decode_item(encode_item(record, None)) == (record, None)
    with pytest.raises(ValueError):
        decode_item(b'{"r": {"id": "gen_x"}, "c": null}')


def test_a_record_with_an_integer_orjson_cannot_write_is_still_spooled(tmp_path: Path) -> None:
    """A spill used to raise TypeError here, which ended the writer's task: nothing was written after."""
    record = make_record("ws", cost=3, output_tokens=2**70)
    spool = Spool(tmp_path, max_bytes=1_000_000)
    assert spool.append([(record, charge_for(record))]) == 1
    segment = spool.next_segment()
    assert segment is not None
    (item,) = spool.read(segment).items
    assert item[0].id == record.id and item[0].created_at == record.created_at
    assert item[0].output_tokens == float(2**70)  # read back as a number the database refuses
    assert item[1] == charge_for(record)


def test_appended_records_replay_in_order_and_the_files_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000, segment_bytes=2_000)
    first, second = items(5), items(7)
    assert spool.append(first) == 5
    assert spool.append(second) == 7
    assert spool.records == 12 and spool.bytes > 0 and spool.has_pending
    segments = list((tmp_path / "spool").glob("w-*/seg-*.jsonl"))
    assert len(segments) > 1, "segments rotate at segment_bytes"

    assert replay_all(spool) == first + second
    assert (spool.records, spool.bytes, spool.has_pending) == (0, 0, False)
    assert not list((tmp_path / "spool").glob("w-*/seg-*"))


def test_append_stops_at_the_bound_and_takes_more_once_replayed(tmp_path: Path) -> None:
    batch = items(10)
    sizes = [len(encode_item(*item)) for item in batch]
    spool = Spool(tmp_path / "spool", max_bytes=sum(sizes[:4]) + min(sizes) // 2)
    assert spool.append(batch) == 4
    assert spool.bytes == sum(sizes[:4]) and spool.records == 4
    assert spool.append(batch[4:]) == 0, "half a line of room is not room for a line"

    assert replay_all(spool) == batch[:4]
    assert spool.append(batch[4:]) == 4


def test_a_torn_last_line_is_skipped_with_a_warning_and_earlier_lines_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    written = items(3)
    spool.append(written)
    spool.seal()
    (path,) = list((tmp_path / "spool").glob("w-*/seg-*.jsonl"))
    whole = encode_item(*items(1)[0])
    with path.open("ab") as handle:  # a crash in the middle of the next append
        handle.write(whole[: len(whole) // 2])

    segment = spool.next_segment()
    assert segment is not None
    with caplog.at_level(logging.WARNING, logger="aistats_gateway.store.spool"):
        contents = spool.read(segment)
    assert contents.items == written
    assert contents.torn_tail and contents.corrupt_lines == 0
    assert "torn last line" in caplog.text


def test_a_corrupt_middle_line_is_skipped_and_the_file_kept_for_inspection(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    first, last = items(1), items(1)
    spool.append(first)
    (path,) = list((tmp_path / "spool").glob("w-*/seg-*.jsonl"))
    with path.open("ab") as handle:
        handle.write(b"{not json at all\n")
    spool.append(last)
    segment = spool.next_segment()
    assert segment is not None
    contents = spool.read(segment)
    assert contents.items == first + last and contents.corrupt_lines == 1

    spool.remove(segment, quarantine=contents.corrupt_lines > 0)
    assert not path.exists() and path.with_suffix(".jsonl.bad").exists()
    assert not spool.has_pending


def test_a_dead_writers_spool_is_claimed_by_the_next_one_and_its_directory_removed(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    dead = Spool(root, max_bytes=10_000_000, segment_bytes=1_500)
    left_behind = items(6)
    dead.append(left_behind)
    alive = Spool(root, max_bytes=10_000_000)
    assert alive.claim_orphans() == 0, "a spool whose writer holds its lock is not touched"

    dead.close()  # the process exits: its lock is released, its files stay
    assert len(list(root.glob("w-*/seg-*.jsonl"))) > 1
    found = alive.claim_orphans()
    assert found == alive.orphan_segments > 1
    assert alive.claim_orphans() == 0, "claimed once"
    own = items(2)
    alive.append(own)

    replayed = []
    while (segment := alive.next_segment()) is not None:
        replayed.append((segment.own, alive.read(segment).items))
        alive.remove(segment)
    assert [own_flag for own_flag, _ in replayed] == [False] * found + [True]
    assert [item for _, chunk in replayed for item in chunk] == left_behind + own
    assert list(root.iterdir()) == [alive._dir], "the dead writer's directory is gone"
    alive.close()
    assert not list(root.iterdir()), "an empty spool leaves no directory behind on close"


def test_spool_for_is_off_at_zero_mb_and_bounded_otherwise(tmp_path: Path) -> None:
    assert spool_for(tmp_path, 0) is None
    spool = spool_for(tmp_path, 3)
    assert spool is not None
    assert (spool.root, spool.max_bytes) == (tmp_path / "spool", 3 * 1024 * 1024)


def test_the_writer_block_of_the_config_sets_the_spool_bound_and_delay(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("writer:\n  spool_max_mb: 16\n  spool_after_s: 2.5\n")
    settings = load_settings(config, env={})
    assert (settings.writer.spool_max_mb, settings.writer.spool_after_s) == (16, 2.5)
    assert load_settings(None, env={}).writer == WriterSettings(spool_max_mb=256, spool_after_s=1.0)

    for bad, key in (
        ("writer:\n  spool_max_mb: -1\n", "writer.spool_max_mb"),
        ("writer:\n  spool_after_s: 0\n", "writer.spool_after_s"),
        ("writer:\n  spool_dir: /x\n", "writer.spool_dir"),
    ):
        config.write_text(bad)
        with pytest.raises(ConfigError) as error:
            load_settings(config, env={})
        assert error.value.key == key


def test_a_failed_write_seals_the_segment_and_the_next_append_starts_a_new_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    first = items(2)
    spool.append(first)

    real = spool._current_file
    assert real is not None

    class DiskFull:
        def write(self, data: bytes) -> int:
            real.write(data[: len(data) // 2])  # half of it reached the disk
            real.flush()
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            real.close()

    spool._current_file = DiskFull()  # type: ignore[assignment]
    with pytest.raises(OSError):
        spool.append(items(1))
    assert spool.records == 2
    later = items(3)
    assert spool.append(later) == 3
    assert replay_all(spool) == first + later
