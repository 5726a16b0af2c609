"""A provider that reports absurd usage, or a NUL in its text, cannot stop usage recording.

Token counts are stored in 32-bit columns on Postgres. Before the bound, a reply claiming a
trillion prompt tokens made its batch fail on every retry, so that record and every record after
it waited (then spooled, then held intake) for ever. Now the counts are recorded, and billed, as
the largest value the columns hold, and the writer goes on. Postgres text columns refuse NUL
characters the same way; text a client or provider chose is stored with U+FFFD in their place.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from aistats_gateway.store.records import MAX_STORED_TOKENS, GenerationRecord
from aistats_gateway.store.repositories import Store
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings, wait_for

PAID = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]


def stored(admin: Admin, generation_id: str) -> GenerationRecord | None:
    """The generation as the database holds it (None until the writer has written it)."""

    async def get(store: Store) -> GenerationRecord | None:
        return await store.get_generation(generation_id)

    return admin.run(get)  # type: ignore[no-any-return]


def test_a_trillion_reported_tokens_are_recorded_at_the_column_maximum_and_the_writer_goes_on(
    tmp_path: Path, fake_server: FakeOpenAIServer, postgres_url: str
) -> None:
    config = fake_provider_config(fake_server.base_url)
    settings = gateway_settings(tmp_path, config, database_url=postgres_url)
    admin = Admin(settings)
    key, _ = admin.create_key()
    admin.grant(10**15)  # $1M: the bounded cost is still covered
    with GatewayServer(settings, refresh_interval=0.1) as server:
        client = server.openai(key)
        fake_server.fake.default = Behaviour(prompt_tokens=10**12, completion_tokens=5)
        absurd = client.chat.completions.create(model=PAID, messages=HI)
        fake_server.fake.default = Behaviour(prompt_tokens=7, completion_tokens=3)
        normal = client.chat.completions.create(model=PAID, messages=HI)

        wait_for(lambda: stored(admin, normal.id) is not None, timeout=10)
        big = stored(admin, absurd.id)
        assert big is not None and big.input_tokens == MAX_STORED_TOKENS and big.output_tokens == 5
        # $0.15 per million input tokens (150 nano-USD each), $0.60 per million output (600)
        assert big.cost_nano == MAX_STORED_TOKENS * 150 + 5 * 600
        small = stored(admin, normal.id)
        assert small is not None and small.input_tokens == 7 and small.output_tokens == 3


def test_a_nul_in_a_finish_reason_or_model_name_is_stored_and_the_writer_goes_on(
    tmp_path: Path, fake_server: FakeOpenAIServer, postgres_url: str
) -> None:
    config = fake_provider_config(fake_server.base_url)
    settings = gateway_settings(tmp_path, config, database_url=postgres_url)
    admin = Admin(settings)
    key, _ = admin.create_key()
    admin.grant(10**12)
    with GatewayServer(settings, refresh_interval=0.1) as server:
        client = server.openai(key)
        fake_server.fake.default = Behaviour(finish_reason="stop\x00", prompt_tokens=7, completion_tokens=3)
        nul_reason = client.chat.completions.create(model=PAID, messages=HI)
        with pytest.raises(openai.NotFoundError):  # a model nobody serves: a failed, recorded request
            client.chat.completions.create(model="nobody/mo\x00del", messages=HI)
        fake_server.fake.default = Behaviour(prompt_tokens=7, completion_tokens=3)
        normal = client.chat.completions.create(model=PAID, messages=HI)

        wait_for(lambda: stored(admin, normal.id) is not None, timeout=10)
        record = stored(admin, nul_reason.id)
        assert record is not None and record.finish_reason == "stop\ufffd" and record.cost_nano > 0

        async def models(store: Store) -> list[str]:
            async with store.engine.connect() as conn:
                rows = await conn.exec_driver_sql("SELECT model FROM generations WHERE status = 'failed'")
                return [row[0] for row in rows]

        assert admin.run(models) == ["nobody/mo\ufffddel"]
