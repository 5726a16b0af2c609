"""``aistats-gateway spool status|retry-refused``: the usage spool from the shell (spool_admin.py)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from ..cli_support import CommandError, print_json, with_store
from ..settings import load_settings
from .repositories import Store
from .spool import spool_root
from .spool_admin import DatabaseUnavailable, RetryBusy, RetryOutcome, retry_refused, spool_report

_MIB = 1024 * 1024


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    report = spool_report(spool_root(settings.data_dir))
    if args.json:
        print_json(report.to_json())
        return 0
    print(f"spool: {report.root}")
    if settings.writer.spool_max_mb <= 0:
        print("  (writer.spool_max_mb is 0: the spool is off, refused records are only logged)")
    print(
        f"pending: {report.pending_records} record(s) in {report.pending_segments} segment(s), "
        f"{report.pending_bytes / _MIB:.1f} MiB"
        + (" (each gateway replays them once the database answers)" if report.pending_segments else "")
    )
    refused_records = sum(item.records for item in report.refused)
    print(f"refused: {refused_records} record(s) in {len(report.refused)} file(s)")
    for item in report.refused:
        unreadable = f", {item.unreadable} unreadable line(s)" if item.unreadable else ""
        print(f"  {item.path}  {item.records} record(s){unreadable}  {item.modified:%Y-%m-%d %H:%M} UTC")
        print(f"    {item.reason}")
    if report.refused:
        print("  retry them, once the cause is fixed, with: aistats-gateway spool retry-refused")
    for path in report.quarantined:
        print(f"quarantined (a segment with unreadable lines, already replayed without them): {path}")
    return 0


def cmd_retry_refused(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    root = spool_root(settings.data_dir)
    paths = [Path(name) for name in args.files] if args.files else None
    for path in paths or []:
        if not path.is_file():
            raise CommandError(f"{path}: no such file")

    async def action(store: Store) -> list[RetryOutcome]:
        return await retry_refused(store, root, paths)

    try:
        outcomes = asyncio.run(with_store(settings, action))
    except RetryBusy as exc:
        raise CommandError(f"{exc}; try again when it is done") from None
    except DatabaseUnavailable as exc:
        _report(exc.outcomes, args.json)
        raise CommandError(
            f"the database failed for a reason other than a record's data ({exc}); records written "
            "so far left their files, the rest were kept: run the command again when it answers"
        ) from None
    _report(outcomes, args.json)
    return 1 if any(outcome.still_refused for outcome in outcomes) else 0


def _report(outcomes: list[RetryOutcome], as_json: bool) -> None:
    if as_json:
        print_json([_outcome_json(outcome) for outcome in outcomes])
        return
    if not outcomes:
        print("no refused records")
        return
    for outcome in outcomes:
        parts = [f"{outcome.written} written"]
        if outcome.still_refused:
            parts.append(f"{outcome.still_refused} still refused ({outcome.reason})")
        if outcome.unreadable:
            parts.append(f"{outcome.unreadable} unreadable line(s) kept")
        print(f"{outcome.path}: {', '.join(parts)}" + ("; file removed" if outcome.removed else ""))
    written = sum(outcome.written for outcome in outcomes)
    still = sum(outcome.still_refused for outcome in outcomes)
    print(f"written {written}, still refused {still}")


def _outcome_json(outcome: RetryOutcome) -> dict[str, Any]:
    return {
        "file": str(outcome.path),
        "written": outcome.written,
        "still_refused": outcome.still_refused,
        "unreadable_lines": outcome.unreadable,
        "reason": outcome.reason or None,
        "removed": outcome.removed,
    }


def add_spool_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``spool status|retry-refused`` on the CLI's sub-command parser."""
    spool = commands.add_parser("spool", help="the usage writer's on-disk spool").add_subparsers(
        dest="spool_command", required=True
    )
    status = spool.add_parser(
        "status", parents=[common], help="records waiting in the spool, and records the database refused"
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    retry = spool.add_parser(
        "retry-refused",
        parents=[common],
        help="write refused records again (all, or the files given); exit status 1 if any is still refused",
    )
    retry.add_argument("files", nargs="*", metavar="FILE", help="refused files (default: every one)")
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(func=cmd_retry_refused)
