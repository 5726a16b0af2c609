"""``aistats-gateway byok set|list|delete|rotate``: workspaces' own provider keys from the shell.

``set`` reads the key from standard input (piped) or a hidden prompt, never from the command
line, where it would show in ``ps`` and the shell history. No command prints a key.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..bootstrap import DEFAULT_WORKSPACE
from ..cli_support import print_json as _print_json
from ..cli_support import with_store
from ..settings import Settings, load_settings
from ..store.credentials import CredentialConflict
from ..store.repositories import Store
from .crypto import Keyring
from .service import (
    NOT_CONFIGURED,
    ByokInputError,
    check_key,
    check_label,
    check_provider,
    rotate_credentials,
    store_credential,
)


class _Failure(Exception):
    """Printed as ``error: …``; the command exits with status 1."""


def _keyring(settings: Settings) -> Keyring:
    if not settings.byok.master_keys:
        raise _Failure(NOT_CONFIGURED)
    return Keyring(settings.byok.master_keys)


def _run(settings: Settings, action: Callable[[Store], Awaitable[Any]]) -> Any:
    return asyncio.run(with_store(settings, action))


async def _workspace_id(store: Store, name_or_id: str) -> str:
    workspace = await store.find_workspace(name_or_id)
    if workspace is None:
        raise _Failure(
            f"no workspace named '{name_or_id}' (create it with: aistats-gateway workspaces create NAME)"
        )
    return workspace.id


def _read_key(provider: str) -> str:
    """The key from piped standard input, else from a prompt that does not echo it."""
    if sys.stdin.isatty():
        return getpass.getpass(f"API key for provider '{provider}' (input hidden): ")
    return sys.stdin.readline()


def _guarded(command: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args) or 0
        except (_Failure, ByokInputError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def cmd_set(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    keyring = _keyring(settings)
    provider = check_provider(args.provider, settings.providers)
    label = check_label(args.label)
    api_key = check_key(_read_key(provider))

    async def action(store: Store) -> dict[str, Any]:
        workspace_id = await _workspace_id(store, args.workspace)
        try:
            row, replaced = await store_credential(
                store, keyring, workspace_id=workspace_id, provider=provider, api_key=api_key, label=label
            )
        except CredentialConflict as exc:
            raise _Failure(f"{exc}; run the command again") from None
        return {**row.to_api(), "replaced": replaced.id if replaced is not None else None}

    stored = _run(settings, action)
    if args.json:
        _print_json(stored)
        return
    replaced = f", replacing {stored['replaced']}" if stored["replaced"] else ""
    print(
        f"Stored BYOK key {stored['id']} for provider '{provider}' in workspace '{args.workspace}' "
        f"(fingerprint {stored['fingerprint']}, master key {stored['master_key_id']}{replaced}). "
        "Running gateways use it within 1 s."
    )


def cmd_list(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)

    async def action(store: Store) -> list[dict[str, Any]]:
        workspace_id = await _workspace_id(store, args.workspace) if args.workspace else None
        rows = await store.list_provider_credentials(workspace_id, include_revoked=args.all)
        return [row.to_api() for row in rows]

    rows = _run(settings, action)
    if args.json:
        _print_json(rows)
        return
    print(f"{'ID':<32}{'WORKSPACE':<32}{'PROVIDER':<20}{'FINGERPRINT':<22}{'MASTER KEY':<12}LABEL")
    for row in rows:
        state = " (revoked)" if row["revoked_at"] else ""
        print(
            f"{row['id']:<32}{row['workspace_id']:<32}{row['provider']:<20}{row['fingerprint']:<22}"
            f"{row['master_key_id'] or '-':<12}{row['label'] or '-'}{state}"
        )


def cmd_delete(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    row = _run(settings, lambda store: store.revoke_provider_credential(args.id))
    if row is None:
        raise _Failure(f"no active BYOK credential '{args.id}'")
    print(
        f"Deleted BYOK key {args.id} (provider '{row.provider}'); running gateways stop using it within 1 s."
    )


def cmd_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt every credential under the active master key; exit 1 when some could not be."""
    settings = load_settings(args.config)
    keyring = _keyring(settings)
    report = _run(settings, lambda store: rotate_credentials(store, keyring))
    if args.json:
        _print_json(report.to_json())
    else:
        print(
            f"Active master key '{report.active_key_id}': re-encrypted {report.rotated} credential(s), "
            f"{report.already_current} already current, {len(report.failed)} failed."
        )
        for credential_id, problem in report.failed:
            print(f"  {credential_id}: {problem}")
        if not report.failed:
            print("Master keys other than the active one may now be removed from the environment.")
    return 1 if report.failed else 0


def add_byok_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``byok set|list|delete|rotate`` on the CLI's sub-command parser."""
    byok = commands.add_parser("byok", help="workspaces' own provider keys (BYOK)").add_subparsers(
        dest="byok_command", required=True
    )
    put = byok.add_parser(
        "set",
        parents=[common],
        help="store a workspace's key for a provider, read from stdin or a hidden prompt",
    )
    put.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    put.add_argument("--provider", required=True, help="a configured provider name, e.g. openai")
    put.add_argument("--label")
    put.add_argument("--json", action="store_true")
    put.set_defaults(func=_guarded(cmd_set))
    listing = byok.add_parser("list", parents=[common], help="list credentials (never the keys)")
    listing.add_argument("--workspace")
    listing.add_argument("--all", action="store_true", help="include revoked credentials")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_guarded(cmd_list))
    delete = byok.add_parser("delete", parents=[common], help="revoke a credential and wipe its ciphertext")
    delete.add_argument("id")
    delete.set_defaults(func=_guarded(cmd_delete))
    rotate = byok.add_parser(
        "rotate", parents=[common], help="re-encrypt every credential under the active master key"
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=_guarded(cmd_rotate))
