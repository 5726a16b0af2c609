"""Run the real gateway over real sockets for end-to-end tests.

``GatewayServer`` starts ``create_app`` under uvicorn (uvloop + httptools, as in production) in
a thread on an ephemeral loopback port. Test code talks to it with the official SDKs, and
changes the database through its own ``Store`` (as the CLI would), never through the app.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import uvicorn
import yaml

from aistats_gateway.app import create_app
from aistats_gateway.keys import generate_key
from aistats_gateway.settings import Settings, load_settings
from aistats_gateway.state import AppState
from aistats_gateway.store.db import create_engine
from aistats_gateway.store.migrate import migrate
from aistats_gateway.store.repositories import Store

TEST_PEPPER = "test-pepper-not-secret"


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fake_provider_config(
    base_url: str, *, price: dict[str, str] | None = None, **timeouts: float
) -> dict[str, Any]:
    """A config whose models all route to the fake OpenAI server as provider ``fake``."""
    provider: dict[str, Any] = {"type": "openai", "base_url": base_url, "api_key": "sk-fake"}
    compat: dict[str, Any] = {"type": "openai_compatible", "base_url": base_url, "api_key": "sk-fake"}
    if timeouts:
        provider["timeouts"] = compat["timeouts"] = timeouts
    paid_price = price or {"input": "0.15", "output": "0.60", "cached_input": "0.075"}
    return {
        "providers": {"fake": provider, "fake-compat": compat},
        "models": {
            "google/gemma-3-27b:free": {
                "providers": [
                    {
                        "provider": "fake-compat",
                        "model": "gemma-3-27b-it",
                        "price": {"input": "0", "output": "0"},
                    }
                ]
            },
            "openai/gpt-4o-mini": {
                "max_output_tokens": 1000,
                "providers": [{"provider": "fake", "model": "gpt-4o-mini", "price": paid_price}],
            },
            "test/compat-paid": {
                "max_output_tokens": 1000,
                "providers": [{"provider": "fake-compat", "model": "compat-model", "price": paid_price}],
            },
        },
    }


class GatewayServer:
    """The gateway app under uvicorn in a daemon thread; ``stop`` drains it like a real shutdown."""

    def __init__(self, settings: Settings, *, refresh_interval: float = 0.5) -> None:
        self.settings = settings
        self.app = create_app(settings, refresh_interval=refresh_interval)
        self.state: AppState = self.app.state.gateway
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server is not None and self._server.started, timeout=20)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "gateway did not shut down"

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def openai(self, key: str, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=key, max_retries=0, **kwargs)


class Admin:
    """Database-side actions a test takes, like the CLI would: its own engine and event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, action: Callable[[Store], Any]) -> Any:
        async def go() -> Any:
            store = Store(create_engine(self.settings.database_url))
            try:
                await migrate(store.engine)
                return await action(store)
            finally:
                await store.engine.dispose()

        return asyncio.run(go())

    def workspace_id(self, name: str = "default") -> str:
        return str(self.run(lambda store: store.ensure_workspace(name)).id)

    def create_key(self, workspace: str = "default", name: str = "test") -> tuple[str, str]:
        """A new key for ``workspace``: ``(full key, kid)``."""
        key = generate_key(TEST_PEPPER.encode())
        workspace_id = self.workspace_id(workspace)

        async def insert(store: Store) -> None:
            await store.insert_api_key(key.kid, workspace_id, name, key.secret_hash)

        self.run(insert)
        return key.key, key.kid

    def grant(self, usd_nanos: int, workspace: str = "default") -> None:
        workspace_id = self.workspace_id(workspace)
        self.run(lambda store: store.grant_credits(workspace_id, usd_nanos, note="test"))


def gateway_settings(
    tmp_path: Path, config: dict[str, Any], database_url: str | None = None, redis_url: str | None = None
) -> Settings:
    env = {
        "AISTATS_DATA_DIR": str(tmp_path / "data"),
        "AISTATS_KEY_PEPPER": TEST_PEPPER,
    }
    if database_url:
        env["AISTATS_DATABASE_URL"] = database_url
    if redis_url:
        env["AISTATS_REDIS_URL"] = redis_url
    return load_settings(write_config(tmp_path, config), env=env)
