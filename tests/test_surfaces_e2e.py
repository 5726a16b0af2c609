"""Chat Completions and Responses through the gateway with the openai SDK, streamed and not."""

from __future__ import annotations

import json

import httpx

from tests.e2e_fixtures import Live
from tests.fakes.openai_server import Behaviour
from tests.harness import wait_for

PAID = "openai/gpt-4o-mini"  # provider type openai: chat and responses pass through
COMPAT = "test/compat-paid"  # provider type openai_compatible: responses are translated to chat
FREE = "google/gemma-3-27b:free"


def _fund(live: Live) -> None:
    live.admin.grant(10_000_000_000)
    wait_for(
        lambda: (
            live.gateway.state.wallets.snapshot(
                live.gateway.state.keys.authenticate({"authorization": f"Bearer {live.key}"}).workspace_id
            )["available"]
            > 0
        )
    )


def test_chat_passthrough_rewrites_only_model_and_adds_cost(live: Live) -> None:
    _fund(live)
    completion = live.client().chat.completions.create(
        model=PAID, messages=[{"role": "user", "content": "Reply with: hello world"}], temperature=0.3, seed=7
    )
    sent = live.fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["temperature"] == 0.3 and sent.body["seed"] == 7
    assert completion.model == PAID
    assert completion.choices[0].message.content == "hello world"
    assert completion.usage is not None and completion.usage.model_extra["cost"] > 0  # type: ignore[index]


def test_chat_stream_with_usage_puts_cost_in_the_final_chunk(live: Live) -> None:
    _fund(live)
    stream = live.client().chat.completions.create(
        model=PAID,
        messages=[{"role": "user", "content": "Reply with: one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2, "streamed, not buffered"
    assert all(c.id == chunks[0].id and c.id.startswith("gen_") and c.model == PAID for c in chunks)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0 and last.usage.model_extra["cost"] > 0  # type: ignore[index]


def test_chat_stream_without_usage_is_still_billed_but_sends_no_usage_chunk(live: Live) -> None:
    _fund(live)
    client = live.client()
    raw = client.chat.completions.with_raw_response.create(
        model=PAID, messages=[{"role": "user", "content": "Reply with: a b c"}], stream=True
    )
    generation_id = raw.headers["x-generation-id"]
    chunks = list(raw.parse())
    assert all(c.usage is None for c in chunks)
    assert live.fake.requests[-1].body["stream_options"] == {"include_usage": True}, "gateway asks for usage"
    record = wait_for(lambda: client.get(f"/generations?id={generation_id}", cast_to=httpx.Response).json())
    assert record["data"]["streamed"] is True
    assert record["data"]["cost_nanos"] > 0 and record["data"]["usage"]["output_tokens"] == 3


def test_chat_stream_tool_call_arguments_arrive_whole(live: Live) -> None:
    _fund(live)
    args = {"city": "Paris", "units": "celsius", "days": 3}
    live.fake.enqueue(Behaviour(tool_calls=[{"name": "get_weather", "arguments": json.dumps(args)}]))
    with live.client().chat.completions.stream(
        model=PAID,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == args
    assert final.choices[0].finish_reason == "tool_calls"


def test_responses_passthrough_stream_carries_cost_in_completed_event(live: Live) -> None:
    _fund(live)
    events = list(live.client().responses.create(model=PAID, input="Reply with: streamed reply", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.delta" in types
    assert live.fake.requests[-1].path == "/v1/responses"
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == "streamed reply"
    assert completed.id.startswith("resp_") and completed.model == PAID
    assert completed.usage is not None and completed.usage.model_extra["cost"] > 0  # type: ignore[index]
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)


def test_responses_passthrough_non_stream(live: Live) -> None:
    _fund(live)
    response = live.client().responses.create(model=PAID, input="Reply with: exact", instructions="be brief")
    assert live.fake.requests[-1].body["instructions"] == "be brief"
    assert response.output_text == "exact" and response.id.startswith("resp_")
    assert response.usage is not None and response.usage.model_extra["cost"] > 0  # type: ignore[index]


def test_responses_translated_to_chat_for_compatible_provider(live: Live) -> None:
    _fund(live)
    response = live.client().responses.create(
        model=COMPAT, input="Reply with: translated", instructions="system says hi", max_output_tokens=50
    )
    sent = live.fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "system says hi"}
    assert response.output_text == "translated"
    message = response.output[0]
    assert message.id and message.status == "completed" and message.role == "assistant"
    assert message.content[0].annotations == []  # type: ignore[union-attr]
    assert response.usage is not None and response.usage.model_extra["cost"] > 0  # type: ignore[index]


def test_responses_stream_translated_from_chat_stream(live: Live) -> None:
    _fund(live)
    args = {"q": "gateway"}
    live.fake.enqueue(Behaviour(tool_calls=[{"name": "search", "arguments": json.dumps(args)}]))
    with live.client().responses.stream(
        model=COMPAT,
        input="look it up",
        tools=[{"type": "function", "name": "search", "parameters": {"type": "object"}, "strict": False}],
    ) as stream:
        final = stream.get_final_response()
    assert live.fake.requests[-1].body["stream_options"] == {"include_usage": True}
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "search" and json.loads(call.arguments) == args
    assert final.usage is not None and final.usage.model_extra["cost"] > 0  # type: ignore[index]


def test_free_model_on_chat_stream_costs_zero(live: Live) -> None:
    chunks = list(
        live.client().chat.completions.create(
            model=FREE,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["cost"] == 0  # type: ignore[index]


def test_every_response_carries_a_generation_id(live: Live) -> None:
    with httpx.Client(base_url=live.gateway.base_url) as http:
        for method, path in (
            ("GET", "/v1/models"),
            ("GET", "/v1/health"),
            ("GET", "/nope"),
            ("POST", "/v1/responses"),
        ):
            response = http.request(method, path)
            assert response.headers["x-generation-id"].startswith("gen_"), path


def test_client_disconnect_mid_stream_records_a_cancelled_generation(live: Live) -> None:
    live.fake.enqueue(Behaviour(text=" ".join(f"w{i}" for i in range(40)), chunk_delay=0.05))
    with (
        httpx.Client(base_url=live.gateway.base_url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": FREE, "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers={"authorization": f"Bearer {live.key}"},
        ) as response,
    ):
        generation_id = response.headers["x-generation-id"]
        data_lines = (line for line in response.iter_lines() if line.startswith("data:"))
        for _ in range(4):  # the role chunk and three words
            next(data_lines)
        # Leaving the block closes the connection long before the 40 words are sent.

    def record() -> dict | None:
        found = httpx.get(
            f"{live.gateway.base_url}/v1/generations?id={generation_id}",
            headers={"authorization": f"Bearer {live.key}"},
        )
        return found.json()["data"] if found.status_code == 200 else None

    data = wait_for(record, timeout=5)
    assert data["status"] == "cancelled" and data["streamed"] is True
    assert data["error"] == "client disconnected"
    # The provider was cut off before reporting usage: the gateway counted what it relayed.
    assert data["usage_estimated"] is True and data["usage"]["output_tokens"] > 0


def test_stream_without_provider_usage_is_billed_from_an_estimate(live: Live) -> None:
    _fund(live)
    live.fake.enqueue(Behaviour(text="no usage here", omit_usage=True))
    raw = live.client().chat.completions.with_raw_response.create(
        model=PAID,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    generation_id = raw.headers["x-generation-id"]
    chunks = list(raw.parse())
    assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["cost"] > 0  # type: ignore[index]
    data = live.client().get(f"/generations?id={generation_id}", cast_to=httpx.Response).json()["data"]
    assert data["cost_nanos"] > 0 and data["usage_estimated"] is True and data["error"] is None
    assert data["usage"]["output_tokens"] == 3  # "no usage here" is 3 cl100k tokens
