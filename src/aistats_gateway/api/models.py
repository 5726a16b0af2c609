"""``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /v1/data/models?model_id=``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..api.errors import GatewayError, error_response
from ..catalog import Catalog, ModelEntry
from ..ids import new_generation_id
from ..pipeline.routing import Router
from .json import json_response


class ModelsEndpoints:
    """The catalog as the OpenAI SDK and the AI Stats SDK read it (public, like OpenRouter's)."""

    def __init__(self, catalog: Catalog, router: Router) -> None:
        self._catalog = catalog
        self._router = router
        self._listing = {"object": "list", "data": [self._describe(model) for model in catalog.all()]}

    def _available(self, model: ModelEntry) -> bool:
        return self._router.is_available(model.id)

    def _describe(self, model: ModelEntry) -> dict[str, Any]:
        return {**model.to_openai_model(), "available": self._available(model)}

    async def list_models(self, request: Request) -> Response:
        return json_response(self._listing)

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        model = self._catalog.get(model_id)
        if model is None:
            error = GatewayError(
                "not_found_error", f"Model '{model_id}' does not exist", code="model_not_found", param="model"
            )
            return error_response(error, new_generation_id())
        return json_response(self._describe(model))

    async def data_models(self, request: Request) -> Response:
        model_id = request.query_params.get("model_id")
        models = [self._catalog.get(model_id)] if model_id else self._catalog.all()
        data = [
            {
                "model_id": model.id,
                "name": model.name,
                "status": "active" if self._available(model) else "inactive",
                "context_length": model.context_length,
                "max_output_tokens": model.max_output_tokens,
                "pricing": model.to_openai_model()["pricing"],
                "providers": [route.provider for route in model.routes],
            }
            for model in models
            if model is not None
        ]
        return json_response({"models": data})

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
            Route("/v1/data/models", self.data_models, methods=["GET"]),
        ]
