"""The management API: keys, workspaces, credit grants and the ledger (JSON, or CSV export).

Authorised by the admin token (every workspace) or a workspace's management key (its own
workspace only; another workspace's objects answer 404 like missing ones). Inference keys get
403. The work is done by the service layer (services/), which the CLI uses too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..ids import new_generation_id
from ..services import CreditService, KeyService, LedgerFilter, LedgerService, ServiceError, WorkspaceService
from ..services.credits import grant_to_api
from ..services.keys import key_to_api
from ..services.ledger import csv_lines, entry_to_api
from ..services.workspaces import workspace_to_api
from ..state import AppState
from .errors import GatewayError, error_response, invalid
from .json import json_response
from .management_auth import ManagementCaller, authorize_management

Handler = Callable[[Request], Awaitable[Response]]
_NO_STORE = {"cache-control": "no-store"}


class ManagementEndpoints:
    """``/v1/keys``, ``/v1/workspaces``, ``/v1/credits/grants`` and ``/v1/ledger``."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._keys = KeyService(state.store, state.keys.pepper)
        self._workspaces = WorkspaceService(state.store)
        self._credits = CreditService(state.store)
        self._ledger = LedgerService(state.store)

    def routes(self) -> list[Route]:
        wrap = self._wrap
        return [
            Route("/v1/keys", wrap(self.create_key), methods=["POST"]),
            Route("/v1/keys", wrap(self.list_keys), methods=["GET"]),
            Route("/v1/keys/{kid}", wrap(self.get_key), methods=["GET"]),
            Route("/v1/keys/{kid}", wrap(self.update_key), methods=["PATCH"]),
            Route("/v1/keys/{kid}", wrap(self.revoke_key), methods=["DELETE"]),
            Route("/v1/workspaces", wrap(self.create_workspace), methods=["POST"]),
            Route("/v1/workspaces", wrap(self.list_workspaces), methods=["GET"]),
            Route("/v1/workspaces/{workspace_id}", wrap(self.get_workspace), methods=["GET"]),
            Route("/v1/credits/grants", wrap(self.grant_credits), methods=["POST"]),
            Route("/v1/ledger", wrap(self.ledger), methods=["GET"]),
        ]

    @staticmethod
    def _wrap(handler: Handler) -> Handler:
        """Turn gateway and service errors into the contract's error body."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                error = GatewayError(exc.reason, exc.message, param=exc.param, code=exc.code)
                return error_response(error, new_generation_id())
            except GatewayError as error:
                return error_response(error, new_generation_id())

        return endpoint

    def _caller(self, request: Request) -> ManagementCaller:
        return authorize_management(self._state.keys, self._state.settings.admin_token, request.headers)

    async def _workspace_scope(self, caller: ManagementCaller, requested: str | None) -> str | None:
        """The workspace id a call acts on: a management key's own; for the admin the one named
        (an id, or a name for convenience), or None for every workspace."""
        scope = caller.scope(requested)
        if caller.admin and scope is not None:
            scope = (await self._workspaces.get(scope)).id
        return scope

    # -- keys ------------------------------------------------------------------------------------

    async def create_key(self, request: Request) -> Response:
        caller = self._caller(request)
        body = await _json_body(request, {"name", "workspace_id", "kind", "limits"})
        workspace_id = await self._workspace_scope(caller, _optional_str(body, "workspace_id"))
        if workspace_id is None:
            raise invalid("workspace_id is required with the admin token", param="workspace_id")
        created = await self._keys.create(
            workspace_id, name=body.get("name"), kind=body.get("kind"), limits=body.get("limits")
        )
        # The only time the full key is ever returned.
        return json_response({**key_to_api(created.row), "key": created.key}, status=201, headers=_NO_STORE)

    async def list_keys(self, request: Request) -> Response:
        caller = self._caller(request)
        query = request.query_params
        scope = await self._workspace_scope(caller, query.get("workspace_id"))
        page = await self._keys.page(
            scope,
            limit=_int_param(query.get("limit"), "limit"),
            after=query.get("after"),
            include_revoked=_bool_param(query.get("include_revoked"), "include_revoked"),
        )
        return json_response(
            {
                "object": "list",
                "data": [key_to_api(row) for row in page.items],
                "has_more": page.has_more,
                "next_cursor": page.next_cursor,
            }
        )

    async def get_key(self, request: Request) -> Response:
        caller = self._caller(request)
        row = await self._keys.get(request.path_params["kid"], caller.scope(None))
        return json_response(key_to_api(row, await self._keys.usage(row.kid)))

    async def update_key(self, request: Request) -> Response:
        caller = self._caller(request)
        body = await _json_body(request, {"name", "limits"})
        row = await self._keys.update(
            request.path_params["kid"],
            caller.scope(None),
            name=body.get("name"),
            limits=body.get("limits"),
            set_limits="limits" in body,
        )
        return json_response(key_to_api(row))

    async def revoke_key(self, request: Request) -> Response:
        caller = self._caller(request)
        row, _newly = await self._keys.revoke(request.path_params["kid"], caller.scope(None))
        return json_response(key_to_api(row))

    # -- workspaces ------------------------------------------------------------------------------

    async def create_workspace(self, request: Request) -> Response:
        caller = self._caller(request)
        caller.require_admin("create workspaces")
        body = await _json_body(request, {"name"})
        workspace = await self._workspaces.create(body.get("name"))
        wallet = await self._workspaces.wallet(workspace.id)
        return json_response(workspace_to_api(workspace, wallet), status=201)

    async def list_workspaces(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller.admin:
            workspaces = await self._workspaces.all()
        else:
            workspaces = [await self._workspaces.get(caller.scope(None) or "")]
        wallets = {row.workspace_id: row for row in await self._state.store.load_wallets()}
        data = [workspace_to_api(ws, wallets.get(ws.id)) for ws in workspaces]
        return json_response({"object": "list", "data": data, "has_more": False, "next_cursor": None})

    async def get_workspace(self, request: Request) -> Response:
        caller = self._caller(request)
        workspace_id = await self._workspace_scope(caller, request.path_params["workspace_id"])
        workspace = await self._workspaces.get(workspace_id or "")
        return json_response(workspace_to_api(workspace, await self._workspaces.wallet(workspace.id)))

    # -- credits and ledger ----------------------------------------------------------------------

    async def grant_credits(self, request: Request) -> Response:
        caller = self._caller(request)
        caller.require_admin("grant credits")
        body = await _json_body(request, {"workspace_id", "amount_usd", "note"})
        requested = _optional_str(body, "workspace_id")
        if requested is None:
            raise invalid("workspace_id is required", param="workspace_id")
        workspace = await self._workspaces.get(requested)
        outcome = await self._credits.grant(
            workspace.id,
            body.get("amount_usd"),
            note=body.get("note"),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        if outcome.applied:
            return json_response(grant_to_api(outcome), status=201)
        return json_response(grant_to_api(outcome), headers={"idempotent-replayed": "true"})

    async def ledger(self, request: Request) -> Response:
        caller = self._caller(request)
        query = request.query_params
        scope = await self._workspace_scope(caller, query.get("workspace_id"))
        filters = LedgerFilter.parse(
            kind=query.get("kind"),
            since=query.get("since"),
            until=query.get("until"),
            order=query.get("order"),
        )
        limit = _int_param(query.get("limit"), "limit")
        if _wants_csv(request):
            entries = self._ledger.entries(scope, filters, after=query.get("after"), limit=limit)
            filename = f"ledger-{scope or 'all'}.csv"
            return StreamingResponse(
                _encoded(csv_lines(entries)),
                media_type="text/csv; charset=utf-8",
                headers={
                    "content-disposition": f'attachment; filename="{filename}"',
                    "x-generation-id": new_generation_id(),
                },
            )
        page = await self._ledger.page(scope, filters, limit=limit, after=query.get("after"))
        return json_response(
            {
                "object": "list",
                "data": [entry_to_api(entry) for entry in page.items],
                "has_more": page.has_more,
                "next_cursor": page.next_cursor,
            }
        )


async def _encoded(lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for line in lines:
        yield line.encode()


def _wants_csv(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise invalid("format must be json or csv", param="format")
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


async def _json_body(request: Request, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); unknown fields are refused by name."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    for field in body:
        if field not in allowed:
            raise invalid(
                f"Unknown field '{field}'; this endpoint takes {', '.join(sorted(allowed))}", param=field
            )
    return body


def _optional_str(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{field} must be a string", param=field)
    return value


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(f"{name} must be an integer", param=name) from None


def _bool_param(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("", "false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise invalid(f"{name} must be true or false", param=name)
