"""The ``aistats-gateway`` command line: serve, keys, workspaces, credits, ledger, models, migrate, spool.

Keys, workspaces, credits and the ledger export go through the service layer (services/), the
same code the management API runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from .bootstrap import DEFAULT_WORKSPACE, prepare_database
from .byok.cli import add_byok_commands
from .catalog import load_catalog
from .cli_support import CommandError
from .cli_support import print_json as _print_json
from .cli_support import with_store as _with_store
from .key_limits import KeyLimits
from .keys import load_or_create_pepper
from .money import format_usd
from .services import CreditService, KeyService, LedgerFilter, LedgerService, ServiceError, WorkspaceService
from .services.credits import parse_grant_amount
from .services.keys import key_to_api
from .services.ledger import csv_lines
from .settings import ConfigError, Settings, load_settings
from .store.db import create_engine, sqlite_file_path
from .store.migrate import migrate
from .store.reconcile import check_ledger
from .store.records import ApiKeyRow, GrantOutcome, Workspace
from .store.repositories import Store
from .store.spool_cli import add_spool_commands
from .store.sqlite_writer import SqliteWriterProcess


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


# --- serve ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _settings(args)
    pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)

    async def prepare() -> str | None:
        store = Store(create_engine(settings.database_url))
        try:
            return (await prepare_database(store, pepper, issue_key=True)).new_key
        finally:
            await store.engine.dispose()

    new_key = asyncio.run(prepare())
    if new_key:
        print(
            f"First start: created an API key for workspace '{DEFAULT_WORKSPACE}'. "
            "It is shown only this once; store it now:",
            flush=True,
        )
        print(new_key, flush=True)
    import uvicorn

    if args.config:
        os.environ["AISTATS_CONFIG"] = str(args.config)
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    # The workers read it back: with several, /metrics merges them (metrics_workers.py).
    os.environ["AISTATS_WORKERS"] = str(workers)
    # With several workers on a SQLite file, one process writes it for all of them (docs/decisions/
    # 011); it stops last, once the workers have drained their queues through it. One worker
    # writes the file itself, from its database thread (decision 009).
    sqlite_path = sqlite_file_path(settings.database_url)
    sqlite_writer = SqliteWriterProcess(sqlite_path) if sqlite_path is not None and workers > 1 else None
    if sqlite_writer is not None:
        os.environ.update(sqlite_writer.start().to_env())
    print(f"AI Stats Gateway listening on http://{host}:{port} ({workers} worker(s))", flush=True)
    try:
        uvicorn.run(
            "aistats_gateway.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            http="httptools",
            log_level=settings.log_level,
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    finally:
        if sqlite_writer is not None:
            sqlite_writer.stop()


# --- keys, workspaces, credits, ledger export (through the service layer) -------------------

# Service errors name the API field; the CLI names its own flag instead (longest prefix wins).
_KEY_FLAGS = {
    "name": "--name",
    "limits": "--limits",
    "limits.requests_per_minute": "--rpm",
    "limits.tokens_per_minute": "--tpm",
    "limits.spend_usd.daily": "--daily-usd",
    "limits.spend_usd.monthly": "--monthly-usd",
    "limits.spend_usd.total": "--total-usd",
    "limits.allowed_models": "--models",
}
_NONE = "none"  # a limit flag's value that removes that limit


async def _run_services(
    settings: Settings, action: Callable[[Store], Awaitable[Any]], flags: Mapping[str, str] | None = None
) -> Any:
    """Run ``action`` against the store; a refused request becomes ``error: …`` naming the flag."""
    try:
        return await _with_store(settings, action)
    except ServiceError as exc:
        flag = _flag_for(exc.param, flags or {})
        if flag is None:
            raise CommandError(exc.message) from None
        message = exc.message.removeprefix(f"{exc.param}: ")  # the flag replaces the field name
        raise CommandError(f"{flag}: {message}") from None


def _flag_for(param: str | None, flags: Mapping[str, str]) -> str | None:
    if param is None:
        return None
    matches = [field for field in flags if param == field or param.startswith((f"{field}.", f"{field}["))]
    return flags[max(matches, key=len)] if matches else None


async def _service_workspace(store: Store, name_or_id: str) -> Workspace:
    try:
        return await WorkspaceService(store).get(name_or_id)
    except ServiceError:
        raise CommandError(
            f"no workspace named '{name_or_id}' (create it with: aistats-gateway workspaces create NAME)"
        ) from None


def _limit_value(value: str | None, flag: str, integer: bool) -> Any:
    """A limit flag's value in the API form: ``none`` removes the limit."""
    if value is None or value.lower() == _NONE:
        return None
    if not integer:
        return value
    try:
        return int(value)
    except ValueError:
        raise CommandError(f"{flag}: expected a whole number or '{_NONE}', got {value!r}") from None


def _limits_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The API-form limits from ``--limits JSON`` with the single-limit flags applied over it;
    None when no limit option was given."""
    limits: dict[str, Any] = {}
    if args.limits is not None:
        try:
            parsed = orjson.loads(args.limits)
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"--limits: not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise CommandError('--limits: expected a JSON object such as {"requests_per_minute": 60}')
        limits.update(parsed)
    for flag, field in (("--rpm", "requests_per_minute"), ("--tpm", "tokens_per_minute")):
        value = getattr(args, field)
        if value is not None:
            limits[field] = _limit_value(value, flag, integer=True)
    spend = {
        period: _limit_value(value, f"--{period}-usd", integer=False)
        for period, value in (
            ("daily", args.daily_usd),
            ("monthly", args.monthly_usd),
            ("total", args.total_usd),
        )
        if value is not None
    }
    if spend:
        current = limits.get("spend_usd")
        limits["spend_usd"] = {**(current if isinstance(current, dict) else {}), **spend}
    if args.models is not None:
        limits["allowed_models"] = None if [m.lower() for m in args.models] == [_NONE] else args.models
    return limits if limits or args.limits is not None else None


def _key_row_json(row: ApiKeyRow, workspace_names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "kid": row.kid,
        "name": row.name,
        "kind": row.kind,
        "workspace": workspace_names.get(row.workspace_id, row.workspace_id),
        "workspace_id": row.workspace_id,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "limits": KeyLimits.from_json(row.limits).to_api(),
    }


def cmd_keys_create(args: argparse.Namespace) -> None:
    settings = _settings(args)
    pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)
    limits = _limits_from_args(args)
    kind = "management" if args.management else "inference"
    if args.management and limits is not None:
        raise CommandError("limit options apply to inference keys only; a management key calls no model")

    async def action(store: Store) -> dict[str, Any]:
        workspace = await _service_workspace(store, args.workspace)
        created = await KeyService(store, pepper).create(
            workspace.id, name=args.name, kind=kind, limits=limits
        )
        return {
            "key": created.key,
            "kid": created.row.kid,
            "workspace": workspace.name,
            "workspace_id": workspace.id,
            "kind": created.row.kind,
            "limits": KeyLimits.from_json(created.row.limits).to_api(),
        }

    created = asyncio.run(_run_services(settings, action, _KEY_FLAGS))
    if args.json:
        _print_json(created)
        return
    what = "management key" if kind == "management" else "key"
    print(f"Created {what} {created['kid']} for workspace '{created['workspace']}'. It is shown only once:")
    print(created["key"])


def cmd_keys_list(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> list[dict[str, Any]]:
        scope = (await _service_workspace(store, args.workspace)).id if args.workspace else None
        names = {ws.id: ws.name for ws in await WorkspaceService(store).all()}
        rows = await KeyService(store, b"").all(scope, include_revoked=True)
        return [_key_row_json(row, names) for row in rows]

    rows = asyncio.run(_run_services(settings, action))
    if args.json:
        _print_json(rows)
        return
    print(f"{'KID':<14}{'KIND':<12}{'WORKSPACE':<20}{'NAME':<20}{'CREATED':<34}STATUS")
    for row in rows:
        status = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        print(
            f"{row['kid']:<14}{row['kind']:<12}{row['workspace']:<20}{row['name'] or '-':<20}"
            f"{row['created_at']:<34}{status}"
        )


def cmd_keys_show(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> dict[str, Any]:
        keys = KeyService(store, b"")
        row = await keys.get(args.kid, None)
        return key_to_api(row, await keys.usage(row.kid))

    _print_json(asyncio.run(_run_services(settings, action)))


def cmd_keys_update(args: argparse.Namespace) -> None:
    settings = _settings(args)
    limits = _limits_from_args(args)
    if args.clear_limits and limits is not None:
        raise CommandError("--clear-limits removes every limit; it cannot be combined with limit options")
    if args.name is None and limits is None and not args.clear_limits:
        raise CommandError("nothing to change: give --name, --clear-limits or limit options (see --help)")

    async def action(store: Store) -> dict[str, Any]:
        row = await KeyService(store, b"").update(
            args.kid,
            None,
            name=args.name,
            limits=limits,
            set_limits=limits is not None or args.clear_limits,
        )
        return key_to_api(row)

    updated = asyncio.run(_run_services(settings, action, _KEY_FLAGS))
    if args.json:
        _print_json(updated)
        return
    print(f"Updated key {updated['kid']}; every running gateway applies it within 1 s.")
    print(orjson.dumps(updated["limits"]).decode())


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> bool:
        try:
            _row, newly = await KeyService(store, b"").revoke(args.kid, None)
        except ServiceError:
            return False
        return newly

    if not asyncio.run(_run_services(settings, action)):
        raise CommandError(f"no active key with kid '{args.kid}'")
    print(f"Revoked key {args.kid}; every running gateway rejects it within 1 s.")


def cmd_workspaces_create(args: argparse.Namespace) -> None:
    settings = _settings(args)
    workspace = asyncio.run(_run_services(settings, lambda store: WorkspaceService(store).create(args.name)))
    print(f"Created workspace '{workspace.name}' ({workspace.id})")


def cmd_workspaces_list(args: argparse.Namespace) -> None:
    settings = _settings(args)
    for workspace in asyncio.run(_run_services(settings, lambda store: WorkspaceService(store).all())):
        print(f"{workspace.id}  {workspace.name}")


def cmd_credits_grant(args: argparse.Namespace) -> None:
    settings = _settings(args)
    try:
        parse_grant_amount(args.usd, param="--usd")
    except ServiceError as exc:
        raise CommandError(exc.message) from None

    async def action(store: Store) -> tuple[Workspace, GrantOutcome]:
        workspace = await _service_workspace(store, args.workspace)
        outcome = await CreditService(store).grant(
            workspace.id, args.usd, note=args.note, idempotency_key=args.idempotency_key
        )
        return workspace, outcome

    flags = {"note": "--note", "Idempotency-Key": "--idempotency-key"}
    workspace, outcome = asyncio.run(_run_services(settings, action, flags))
    amount = format_usd(outcome.entry.amount_nano)
    balance = format_usd(outcome.wallet.balance_nano)
    if outcome.applied:
        print(f"Granted ${amount} to '{workspace.name}'. Balance: ${balance}")
    else:
        print(
            f"Already granted with idempotency key '{outcome.entry.idempotency_key}': ${amount} to "
            f"'{workspace.name}' (ledger entry {outcome.entry.id}); not applied again. Balance: ${balance}"
        )


def cmd_credits_show(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> dict[str, Any]:
        workspace = await _service_workspace(store, args.workspace)
        wallet = await WorkspaceService(store).wallet(workspace.id)
        return {
            "workspace": workspace.name,
            "balance_usd": format_usd(wallet.balance_nano),
            "granted_total_usd": format_usd(wallet.granted_total_nano),
            "spent_total_usd": format_usd(wallet.spent_total_nano),
            "balance_nanos": wallet.balance_nano,
        }

    shown = asyncio.run(_run_services(settings, action))
    if args.json:
        _print_json(shown)
        return
    print(
        f"Workspace '{shown['workspace']}': balance ${shown['balance_usd']} "
        f"(granted ${shown['granted_total_usd']}, spent ${shown['spent_total_usd']})"
    )


def cmd_ledger_export(args: argparse.Namespace) -> None:
    """Write a workspace's ledger as CSV to ``--csv FILE`` (or stdout), row by row."""
    settings = _settings(args)

    async def action(store: Store) -> int:
        workspace = await _service_workspace(store, args.workspace)
        filters = LedgerFilter.parse(kind=args.kind, since=args.since, until=args.until)
        lines = csv_lines(LedgerService(store).entries(workspace.id, filters))
        rows = -1  # the header is not a row
        with (
            open(args.csv, "w", encoding="utf-8", newline="") if args.csv else nullcontext(sys.stdout) as out
        ):
            async for line in lines:
                out.write(line)
                rows += 1
        return rows

    flags = {"kind": "--kind", "since": "--since", "until": "--until"}
    rows = asyncio.run(_run_services(settings, action, flags))
    if args.csv:
        print(f"Wrote {rows} ledger entries to {args.csv}", file=sys.stderr)


def cmd_models_list(args: argparse.Namespace) -> None:
    settings = _settings(args)
    catalog = load_catalog(settings)
    for model in catalog.all():
        active = [r.provider for r in model.routes if settings.providers[r.provider].active]
        state = f"active via {', '.join(active)}" if active else "inactive"
        print(f"{model.id:<40}{state}")


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print("Database is at the latest schema.")


def cmd_ledger_check(args: argparse.Namespace) -> int:
    """Reconcile wallets, ledger and generations; exit status 1 when anything drifted."""
    settings = _settings(args)

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await check_ledger(engine)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise CommandError(
            f"cannot read the ledger ({type(exc).__name__}: {reason}); "
            "is the database reachable and migrated (aistats-gateway migrate)?"
        ) from exc
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.render())
    return 0 if report.ok else 1


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (default: $AISTATS_CONFIG)")
    parser = argparse.ArgumentParser(prog="aistats-gateway", description="AI Stats Gateway", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the HTTP gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", parents=[common], help="create a key (printed once)")
    create.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--json", action="store_true")
    create.add_argument(
        "--management",
        action="store_true",
        help="a management key: manages this workspace's keys and ledger over /v1/keys etc.; calls no model",
    )
    _limit_options(create)
    create.set_defaults(func=cmd_keys_create)
    update = keys.add_parser("update", parents=[common], help="rename a key or change its limits")
    update.add_argument("kid")
    update.add_argument("--name", help="a new label")
    update.add_argument("--clear-limits", action="store_true", help="remove every limit")
    update.add_argument("--json", action="store_true")
    _limit_options(update)
    update.set_defaults(func=cmd_keys_update)
    show_key = keys.add_parser("show", parents=[common], help="one key's details, limits and usage (JSON)")
    show_key.add_argument("kid")
    show_key.set_defaults(func=cmd_keys_show)
    listing = keys.add_parser("list", parents=[common], help="list keys")
    listing.add_argument("--workspace")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key by its kid")
    revoke.add_argument("kid")
    revoke.set_defaults(func=cmd_keys_revoke)

    workspaces = commands.add_parser("workspaces", help="workspaces").add_subparsers(
        dest="workspaces_command", required=True
    )
    ws_create = workspaces.add_parser("create", parents=[common], help="create a workspace")
    ws_create.add_argument("name")
    ws_create.set_defaults(func=cmd_workspaces_create)
    workspaces.add_parser("list", parents=[common], help="list workspaces").set_defaults(
        func=cmd_workspaces_list
    )

    credits = commands.add_parser("credits", help="prepaid credits").add_subparsers(
        dest="credits_command", required=True
    )
    grant = credits.add_parser("grant", parents=[common], help="add credits to a workspace wallet")
    grant.add_argument("--workspace", required=True)
    grant.add_argument("--usd", required=True, help="amount in USD, e.g. 10 or 2.50")
    grant.add_argument("--note")
    grant.add_argument(
        "--idempotency-key", help="a grant repeated with the same key is applied only once (safe retries)"
    )
    grant.set_defaults(func=cmd_credits_grant)
    show = credits.add_parser("show", parents=[common], help="show a workspace wallet")
    show.add_argument("--workspace", required=True)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_credits_show)

    models = commands.add_parser("models", help="the model catalog").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser("list", parents=[common], help="list models").set_defaults(func=cmd_models_list)

    commands.add_parser("migrate", parents=[common], help="migrate the database").set_defaults(
        func=cmd_migrate
    )

    ledger = commands.add_parser("ledger", help="the credit ledger").add_subparsers(
        dest="ledger_command", required=True
    )
    check = ledger.add_parser(
        "check", parents=[common], help="reconcile wallets, ledger and generations (exit 1 on drift)"
    )
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_ledger_check)
    export = ledger.add_parser("export", parents=[common], help="a workspace's ledger as CSV")
    export.add_argument("--workspace", required=True)
    export.add_argument("--csv", metavar="FILE", help="write to FILE (default: stdout)")
    export.add_argument("--kind", choices=["grant", "charge", "adjustment"])
    export.add_argument("--since", help="ISO 8601 time or unix seconds (inclusive)")
    export.add_argument("--until", help="ISO 8601 time or unix seconds (exclusive)")
    export.set_defaults(func=cmd_ledger_export)
    add_byok_commands(commands, common)
    add_spool_commands(commands, common)
    return parser


def _limit_options(parser: argparse.ArgumentParser) -> None:
    """Per-key limit options (inference keys); ``none`` removes a limit."""
    parser.add_argument(
        "--limits", metavar="JSON", help="all limits as JSON, e.g. '{\"requests_per_minute\": 60}'"
    )
    parser.add_argument("--rpm", dest="requests_per_minute", metavar="N", help="requests per minute")
    parser.add_argument("--tpm", dest="tokens_per_minute", metavar="N", help="tokens per minute")
    parser.add_argument("--daily-usd", metavar="X", help="spend limit per UTC day, in USD")
    parser.add_argument("--monthly-usd", metavar="X", help="spend limit per UTC month, in USD")
    parser.add_argument("--total-usd", metavar="X", help="spend limit over the key's life, in USD")
    parser.add_argument("--models", nargs="+", metavar="GLOB", help="allowed model ids or globs (openai/*)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)  # a command may return its exit status (ledger check: 1 on drift)
    except (CommandError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
