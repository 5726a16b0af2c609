"""Small response helpers shared by the JSON endpoints."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ..ids import new_generation_id


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An orjson-encoded response carrying an ``x-generation-id`` like every gateway response."""
    all_headers = {"x-generation-id": new_generation_id()}
    if headers:
        all_headers.update(headers)
    return Response(
        orjson.dumps(payload), status_code=status, headers=all_headers, media_type="application/json"
    )
