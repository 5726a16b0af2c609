"""The ``aistats-gateway`` command line: serve, keys, workspaces, credits, models, migrate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from .bootstrap import DEFAULT_WORKSPACE, prepare_database
from .catalog import load_catalog
from .keys import generate_key, load_or_create_pepper
from .money import PriceError, format_usd, parse_usd
from .settings import ConfigError, Settings, load_settings
from .store.db import create_engine
from .store.migrate import migrate
from .store.records import Workspace
from .store.repositories import AlreadyExists, Store


class CommandError(Exception):
    """A user-facing failure: printed as ``error: …`` with exit status 1."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[Any]]) -> Any:
    store = Store(create_engine(settings.database_url))
    try:
        await migrate(store.engine)
        await store.ensure_workspace(DEFAULT_WORKSPACE)
        return await action(store)
    finally:
        await store.engine.dispose()


async def _workspace(store: Store, name_or_id: str) -> Workspace:
    workspace = await store.find_workspace(name_or_id)
    if workspace is None:
        raise CommandError(
            f"no workspace named '{name_or_id}' (create it with: aistats-gateway workspaces create NAME)"
        )
    return workspace


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


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
    print(f"AI Stats Gateway listening on http://{host}:{port} ({workers} worker(s))", flush=True)
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


# --- keys, workspaces, credits ----------------------------------------------------------------


def cmd_keys_create(args: argparse.Namespace) -> None:
    settings = _settings(args)
    pepper = load_or_create_pepper(settings.key_pepper, settings.data_dir)

    async def action(store: Store) -> dict[str, str]:
        workspace = await _workspace(store, args.workspace)
        key = generate_key(pepper)
        await store.insert_api_key(key.kid, workspace.id, args.name, key.secret_hash)
        return {"key": key.key, "kid": key.kid, "workspace": workspace.name, "workspace_id": workspace.id}

    created = asyncio.run(_with_store(settings, action))
    if args.json:
        _print_json(created)
        return
    print(f"Created key {created['kid']} for workspace '{created['workspace']}'. It is shown only once:")
    print(created["key"])


def cmd_keys_list(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> list[dict[str, Any]]:
        workspace_id = (await _workspace(store, args.workspace)).id if args.workspace else None
        names = {ws.id: ws.name for ws in await store.list_workspaces()}
        return [
            {
                "kid": row.kid,
                "name": row.name,
                "workspace": names.get(row.workspace_id, row.workspace_id),
                "created_at": row.created_at.isoformat(),
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            }
            for row in await store.list_api_keys(workspace_id)
        ]

    rows = asyncio.run(_with_store(settings, action))
    if args.json:
        _print_json(rows)
        return
    print(f"{'KID':<14}{'WORKSPACE':<20}{'NAME':<20}{'CREATED':<27}STATUS")
    for row in rows:
        status = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        print(
            f"{row['kid']:<14}{row['workspace']:<20}{row['name'] or '-':<20}{row['created_at']:<27}{status}"
        )


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    settings = _settings(args)
    revoked = asyncio.run(_with_store(settings, lambda store: store.revoke_api_key(args.kid)))
    if not revoked:
        raise CommandError(f"no active key with kid '{args.kid}'")
    print(f"Revoked key {args.kid}; every running gateway rejects it within 1 s.")


def cmd_workspaces_create(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> Workspace:
        try:
            return await store.create_workspace(args.name)
        except AlreadyExists as exc:
            raise CommandError(f"a workspace named '{args.name}' already exists") from exc

    workspace = asyncio.run(_with_store(settings, action))
    print(f"Created workspace '{workspace.name}' ({workspace.id})")


def cmd_workspaces_list(args: argparse.Namespace) -> None:
    settings = _settings(args)
    for workspace in asyncio.run(_with_store(settings, lambda store: store.list_workspaces())):
        print(f"{workspace.id}  {workspace.name}")


def cmd_credits_grant(args: argparse.Namespace) -> None:
    settings = _settings(args)
    try:
        amount = parse_usd(args.usd)
    except PriceError as exc:
        raise CommandError(f"--usd: {exc}") from exc
    if amount <= 0:
        raise CommandError("--usd must be a positive amount")

    async def action(store: Store) -> tuple[Workspace, int]:
        workspace = await _workspace(store, args.workspace)
        wallet = await store.grant_credits(workspace.id, amount, note=args.note)
        return workspace, wallet.balance_nano

    workspace, balance = asyncio.run(_with_store(settings, action))
    print(f"Granted ${format_usd(amount)} to '{workspace.name}'. Balance: ${format_usd(balance)}")


def cmd_credits_show(args: argparse.Namespace) -> None:
    settings = _settings(args)

    async def action(store: Store) -> dict[str, Any]:
        workspace = await _workspace(store, args.workspace)
        wallet = await store.get_wallet(workspace.id)
        return {
            "workspace": workspace.name,
            "balance_usd": format_usd(wallet.balance_nano),
            "granted_total_usd": format_usd(wallet.granted_total_nano),
            "spent_total_usd": format_usd(wallet.spent_total_nano),
            "balance_nanos": wallet.balance_nano,
        }

    shown = asyncio.run(_with_store(settings, action))
    if args.json:
        _print_json(shown)
        return
    print(
        f"Workspace '{shown['workspace']}': balance ${shown['balance_usd']} "
        f"(granted ${shown['granted_total_usd']}, spent ${shown['spent_total_usd']})"
    )


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
    create.set_defaults(func=cmd_keys_create)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CommandError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
