"""50 parallel paid requests against a wallet that covers only some of them (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson

from aistats_gateway.canonical import Usage
from aistats_gateway.money import PriceCard, parse_price
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for

REQUESTS = 50
AFFORDABLE = 12
MAX_TOKENS = 200
PRICE = PriceCard(parse_price("0.15"), parse_price("0.60"), parse_price("0.075"))


async def _fire(base_url: str, key: str, body: bytes) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        responses = await asyncio.gather(
            *(http.post("/v1/chat/completions", content=body, headers=headers) for _ in range(REQUESTS))
        )
    return [r.status_code for r in responses]


def test_parallel_paid_requests_never_overspend(
    tmp_path: Path, fake_server: FakeOpenAIServer, database_url: str
) -> None:
    body = orjson.dumps(
        {
            "model": "openai/gpt-4o-mini",
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    reservation = PRICE.worst_case(len(body), MAX_TOKENS)
    actual = PRICE.cost(Usage(input_tokens=40, cached_input_tokens=10, output_tokens=150))
    assert actual < reservation
    grant = AFFORDABLE * reservation + reservation // 2  # covers 12 worst cases, not 13

    # Every answer is slow, so all 50 are in flight together and contend for the same balance.
    fake_server.fake.default = Behaviour(delay=0.4, prompt_tokens=40, cached_tokens=10, completion_tokens=150)
    settings = gateway_settings(
        tmp_path, fake_provider_config(fake_server.base_url), database_url=database_url
    )
    admin = Admin(settings)
    key, _ = admin.create_key()
    workspace_id = admin.workspace_id()
    admin.grant(grant)
    with GatewayServer(settings) as gateway:
        wait_for(lambda: gateway.state.wallets.snapshot(workspace_id)["available"] == grant)
        statuses = asyncio.run(_fire(gateway.base_url, key, body))

    served = statuses.count(200)
    assert statuses.count(402) == REQUESTS - served
    assert served == AFFORDABLE, statuses
    assert len(fake_server.fake.requests) == served, "refused requests never reach the provider"

    wallet = admin.run(lambda store: store.get_wallet(workspace_id))
    ledger_sum = admin.run(lambda store: store.ledger_sum(workspace_id))
    assert wallet.balance_nano == grant - served * actual
    assert wallet.balance_nano >= 0
    assert ledger_sum == wallet.balance_nano  # grant (+) and every charge (-), to the nano-USD
    assert wallet.spent_total_nano == served * actual
