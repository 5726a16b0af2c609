"""The README quickstart, end to end with the openai SDK: free model, 402, credits, exact cost."""

from __future__ import annotations

import httpx
import openai
import pytest

from aistats_gateway.canonical import Usage
from aistats_gateway.money import PriceCard, parse_price
from tests.e2e_fixtures import Live
from tests.fakes.openai_server import Behaviour
from tests.harness import wait_for

PAID = "openai/gpt-4o-mini"
FREE = "google/gemma-3-27b:free"
PRICE = PriceCard(parse_price("0.15"), parse_price("0.60"), parse_price("0.075"))


def test_free_model_answers_with_an_empty_wallet(live: Live) -> None:
    response = live.client().responses.create(model=FREE, input="Reply with: quickstart works", temperature=0)
    assert response.output_text == "quickstart works"
    assert response.id.startswith("resp_")
    assert response.model == FREE
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id
    assert message.content[0].annotations == []
    assert response.usage is not None and response.usage.total_tokens > 0
    assert response.usage.model_extra is not None and response.usage.model_extra["cost"] == 0


def test_paid_model_needs_credits_then_reports_exact_cost(live: Live) -> None:
    client = live.client()
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=PAID, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
    body = refused.value.response.json()
    assert body["reason"] == "insufficient_credits" and body["error"]["type"] == "insufficient_credits"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert live.fake.requests == [], "a refused request must never reach the provider"

    live.admin.grant(5_000_000_000)  # $5
    wait_for(lambda: client.get("/credits", cast_to=httpx.Response).json()["available"] == 5.0)

    live.fake.enqueue(
        Behaviour(text="paid answer", prompt_tokens=1200, completion_tokens=300, cached_tokens=200)
    )
    completion = client.chat.completions.create(
        model=PAID, messages=[{"role": "user", "content": "Reply with: paid answer"}]
    )
    expected = PRICE.cost(Usage(input_tokens=1200, cached_input_tokens=200, output_tokens=300))
    assert expected == 1000 * 150 + 200 * 75 + 300 * 600  # 345_000 nano-USD, computed by hand
    assert completion.choices[0].message.content == "paid answer"
    assert completion.usage is not None and completion.usage.model_extra is not None
    assert completion.usage.model_extra["cost"] == expected / 1e9
    assert completion.id.startswith("gen_")

    record = client.get(f"/generations?id={completion.id}", cast_to=httpx.Response).json()["data"]
    assert record["cost_nanos"] == expected
    assert record["usage"]["input_tokens"] == 1200 and record["usage"]["cached_input_tokens"] == 200
    assert (
        record["model"] == PAID and record["provider"] == "fake" and record["upstream_model"] == "gpt-4o-mini"
    )
    assert (
        record["status"] == "completed" and record["streamed"] is False and record["finish_reason"] == "stop"
    )

    credits = client.get("/credits", cast_to=httpx.Response).json()
    assert credits["nanos"]["balance"] == 5_000_000_000 - expected
    assert credits["nanos"]["reserved"] == 0
    assert credits["total_used"] == expected / 1e9


def test_generation_lookup_accepts_every_derived_id_and_alias(live: Live) -> None:
    client = live.client()
    response = client.responses.create(model=FREE, input="hello")
    generation_id = "gen_" + response.id.removeprefix("resp_")
    for path in (f"/generations?id={response.id}", f"/generation?id={generation_id}"):
        data = client.get(path, cast_to=httpx.Response).json()["data"]
        assert data["id"] == generation_id and data["endpoint"] == "responses"


def test_generation_of_another_workspace_is_not_found(live: Live) -> None:
    response = live.client().responses.create(model=FREE, input="mine")
    live.admin.run(lambda store: store.create_workspace("other"))
    other_key, _ = live.admin.create_key(workspace="other")
    other = live.client(other_key)
    wait_for(lambda: other.get("/health", cast_to=httpx.Response).status_code == 200 and _can_auth(other))
    with pytest.raises(openai.NotFoundError):
        other.get(f"/generations?id={response.id}", cast_to=httpx.Response)


def _can_auth(client: openai.OpenAI) -> bool:
    try:
        client.get("/credits", cast_to=httpx.Response)
    except openai.AuthenticationError:
        return False
    return True
