"""``/v1/byok``: a workspace's own provider keys (docs/byok.md).

``POST /v1/byok {provider, api_key, label?, workspace_id?}`` stores (or replaces) the key for a
provider, ``GET /v1/byok`` lists credentials, ``DELETE /v1/byok/{id}`` revokes one. Callers are a
workspace's management key (its own workspace) or the admin token (``workspace_id`` names the
workspace). No answer ever contains a key: the credential object carries a fingerprint instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..byok.service import (
    NOT_CONFIGURED,
    ByokInputError,
    check_key,
    check_label,
    check_provider,
    store_credential,
)
from ..ids import new_generation_id
from ..state import AppState
from ..store.credentials import CredentialConflict
from .errors import GatewayError, error_response, invalid
from .json import json_response
from .management_auth import ManagementCaller, authorize_management

_BODY_FIELDS = frozenset({"provider", "api_key", "label", "workspace_id"})
_TRUE = frozenset({"1", "true", "yes"})


class ByokEndpoints:
    """Store, list and revoke BYOK credentials."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    def _caller(self, request: Request) -> ManagementCaller:
        state = self._state
        return authorize_management(state.keys, state.settings.admin_token, request.headers)

    async def _workspace(self, caller: ManagementCaller, requested: object, *, required: bool) -> str | None:
        """The workspace acted on: a management key's own; for the admin, ``workspace_id``."""
        if requested is not None and not isinstance(requested, str):
            raise invalid("'workspace_id' must be a string", param="workspace_id")
        if not caller.admin:
            return caller.scope(requested)
        if requested is None:
            if required:
                raise invalid(
                    "The admin token must name the workspace: give 'workspace_id'", param="workspace_id"
                )
            return None
        workspace = await self._state.store.find_workspace(requested)
        if workspace is None:
            raise GatewayError(
                "not_found_error", f"Workspace '{requested}' does not exist", param="workspace_id"
            )
        return workspace.id

    async def create(self, request: Request) -> Response:
        try:
            caller = self._caller(request)
            if not self._state.credentials.enabled:
                raise GatewayError("server_error", NOT_CONFIGURED, code="byok_not_configured")
            body = await _json_object(request)
            unknown = sorted(set(body) - _BODY_FIELDS)
            if unknown:
                raise invalid(f"Unknown field '{unknown[0]}' (expected: {', '.join(sorted(_BODY_FIELDS))})")
            workspace_id = await self._workspace(caller, body.get("workspace_id"), required=True)
            assert workspace_id is not None
            provider = check_provider(body.get("provider"), self._state.settings.providers)
            api_key = check_key(body.get("api_key"))
            label = check_label(body.get("label"))
            keyring = self._state.credentials.keyring
            assert keyring is not None
            try:
                row, replaced = await store_credential(
                    self._state.store,
                    keyring,
                    workspace_id=workspace_id,
                    provider=provider,
                    api_key=api_key,
                    label=label,
                )
            except CredentialConflict as exc:
                raise GatewayError("validation_error", f"{exc}; retry", status=409, code="conflict") from None
        except ByokInputError as exc:
            return error_response(
                invalid(f"'{exc.field}' {exc.problem}", param=exc.field), new_generation_id()
            )
        except GatewayError as error:
            return error_response(error, new_generation_id())
        payload = {**row.to_api(), "replaced": replaced.id if replaced is not None else None}
        return json_response(payload, status=201)

    async def list_credentials(self, request: Request) -> Response:
        try:
            caller = self._caller(request)
            params = request.query_params
            workspace_id = await self._workspace(caller, params.get("workspace_id"), required=False)
            include_revoked = params.get("include_revoked", "").lower() in _TRUE
            rows = await self._state.store.list_provider_credentials(
                workspace_id, include_revoked=include_revoked
            )
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return json_response({"object": "list", "data": [row.to_api() for row in rows]})

    async def delete(self, request: Request) -> Response:
        credential_id = request.path_params["credential_id"]
        try:
            caller = self._caller(request)
            scope = None if caller.admin else caller.workspace_id
            row = await self._state.store.revoke_provider_credential(credential_id, scope)
            if row is None:
                # Another workspace's credential is reported exactly like a missing one.
                raise GatewayError("not_found_error", f"No active BYOK credential '{credential_id}'")
        except GatewayError as error:
            return error_response(error, new_generation_id())
        return json_response({**row.to_api(), "deleted": True})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/byok", self.create, methods=["POST"]),
            Route("/v1/byok", self.list_credentials, methods=["GET"]),
            Route("/v1/byok/{credential_id}", self.delete, methods=["DELETE"]),
        ]


async def _json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (the message never quotes the body: it holds a key)."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise invalid("The body must be a JSON object: {provider, api_key, label?, workspace_id?}") from None
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object: {provider, api_key, label?, workspace_id?}")
    return body
