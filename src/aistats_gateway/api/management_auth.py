"""Who may use the management API: the admin token, or a workspace's management key.

The admin token (``AISTATS_ADMIN_TOKEN``) acts on every workspace; a management key
(``api_keys.kind = 'management'``) acts on its own workspace only. Inference keys are refused
with 403. Both are checked from memory, like inference keys.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from ..pipeline.auth import KeyCache, bearer_or_api_key
from .errors import GatewayError


@dataclass(frozen=True, slots=True)
class ManagementCaller:
    """An authorised management caller: the admin, or one workspace's management key."""

    admin: bool
    workspace_id: str | None  # the key's workspace; None for the admin (every workspace)
    kid: str | None = None

    def scope(self, workspace_id: str | None) -> str | None:
        """The workspace a request acts on: a management key's own (asking for another is 404,
        so workspaces cannot be probed); the admin's choice, ``None`` meaning every workspace."""
        if self.admin:
            return workspace_id
        if workspace_id is not None and workspace_id != self.workspace_id:
            raise GatewayError("not_found_error", f"Workspace '{workspace_id}' does not exist")
        return self.workspace_id

    def require_admin(self, action: str) -> None:
        """403 unless this is the admin token (e.g. granting credits, creating workspaces)."""
        if not self.admin:
            raise GatewayError(
                "authorization_error", f"Only the admin token (AISTATS_ADMIN_TOKEN) may {action}"
            )


def authorize_management(
    keys: KeyCache, admin_token: str | None, headers: Mapping[str, str]
) -> ManagementCaller:
    """The caller of a management request, or 401/403 saying what is wrong."""
    presented = bearer_or_api_key(headers)
    if admin_token and presented and hmac.compare_digest(presented.encode(), admin_token.encode()):
        return ManagementCaller(admin=True, workspace_id=None)
    principal = keys.authenticate(headers, kind="management")
    return ManagementCaller(admin=False, workspace_id=principal.workspace_id, kid=principal.kid)
