"""The fake Anthropic server speaks the real Messages API wire format: checked with the official SDK."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from anthropic.types import Message, MessageParam, ToolParam

from tests.fakes.anthropic_server import Behaviour, FakeAnthropic, FakeAnthropicServer

KEY = "sk-ant-fake-test"
REPO = Path(__file__).resolve().parent.parent
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_ARGS = '{"city": "Paris", "unit": "celsius"}'


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(fake=FakeAnthropic(api_key=KEY)) as running:
        yield running


@pytest.fixture
def client(server: FakeAnthropicServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def _user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def _raw_post(server: FakeAnthropicServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    sent = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **headers}
    return httpx.post(f"{server.base_url}/v1/messages", json=body, headers=sent, timeout=10)


# --- Non-streaming ------------------------------------------------------------------------------


def test_create_answers_reply_with_text_and_counts_usage_by_the_documented_rule(
    client: anthropic.Anthropic,
) -> None:
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        system="Be brief.",
        messages=_user("Reply with: Hello big world"),
    )
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-sonnet-4-5")
    (block,) = message.content
    assert block.type == "text" and block.text == "Hello big world"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    # (9 + 27 characters) // 4 + 2 (one message and the system prompt); 3 text deltas.
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (11, 3)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, 0)
    assert usage.output_tokens_details is None


def test_system_as_text_blocks_counts_like_a_string_and_is_recorded(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    message = client.messages.create(
        model="m",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief."}],
        messages=_user("Reply with: Hello big world"),
    )
    assert message.usage.input_tokens == 11
    assert server.fake.requests[-1].body["system"] == [{"type": "text", "text": "Be brief."}]


def test_without_reply_with_the_answer_echoes_the_last_user_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="m",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: second question"


def test_tool_use_block_has_a_dict_input_and_stop_reason_tool_use(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(
        Behaviour(tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}]),
        Behaviour(
            text="Let me check.",
            tool_calls=[{"name": "get_weather", "input": {"city": "Oslo"}, "id": "toolu_x"}],
        ),
    )
    first = client.messages.create(model="m", max_tokens=64, messages=_user("weather?"), tools=[WEATHER_TOOL])
    (use,) = first.content
    assert use.type == "tool_use"
    assert use.id.startswith("toolu_01") and use.name == "get_weather"
    assert use.input == {"city": "Paris", "unit": "celsius"}
    assert first.stop_reason == "tool_use"
    # 3 argument fragments, no text.
    assert first.usage.output_tokens == 3

    second = client.messages.create(
        model="m",
        max_tokens=64,
        messages=_user("weather?"),
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
    )
    assert [b.type for b in second.content] == ["text", "tool_use"]
    assert second.content[1].type == "tool_use"
    assert (second.content[1].id, second.content[1].input) == ("toolu_x", {"city": "Oslo"})
    assert server.fake.requests[-1].body["tool_choice"] == {"type": "any"}


def test_tool_result_turn_keeps_answering_the_original_prompt_and_counts_tool_text(
    client: anthropic.Anthropic,
) -> None:
    message = client.messages.create(
        model="m",
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Reply with: It is sunny"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 C"}],
            },
        ],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "It is sunny"
    # 23 + len('{"city": "Oslo"}') 16 + 11 characters = 50 // 4 = 12, + 3 messages.
    assert message.usage.input_tokens == 15


def test_thinking_block_comes_first_with_a_signature_and_counts_as_thinking_tokens(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(Behaviour(thinking="The user wants a greeting", text="Hi there"))
    message = client.messages.create(
        model="m",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=_user("greet me"),
    )
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "The user wants a greeting"
    assert len(thinking.signature) > 20
    assert text.type == "text" and text.text == "Hi there"
    # 5 thinking deltas + 2 text deltas.
    assert message.usage.output_tokens == 7
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 5
    assert server.fake.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_scripted_token_counts_and_cache_tokens_are_reported(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(
        Behaviour(input_tokens=40, output_tokens=9, cached_tokens=100, cache_creation_tokens=7),
        Behaviour(cached_tokens=5, cache_creation_tokens=2),
    )
    scripted = client.messages.create(model="m", max_tokens=64, messages=_user("x")).usage
    assert (scripted.input_tokens, scripted.output_tokens) == (40, 9)
    assert (scripted.cache_read_input_tokens, scripted.cache_creation_input_tokens) == (100, 7)
    assert scripted.cache_creation is not None and scripted.cache_creation.ephemeral_5m_input_tokens == 7

    # 40 characters // 4 + 1 message = 11 in total; reads and writes are taken out of input_tokens.
    derived = client.messages.create(model="m", max_tokens=64, messages=_user("y" * 40)).usage
    assert (derived.input_tokens, derived.cache_read_input_tokens, derived.cache_creation_input_tokens) == (
        4,
        5,
        2,
    )


def test_max_tokens_and_stop_sequence_stop_reasons_are_reported(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(
        Behaviour(text="cut", finish_reason="max_tokens"), Behaviour(finish_reason="stop_sequence")
    )
    cut = client.messages.create(model="m", max_tokens=1, messages=_user("x"))
    assert (cut.stop_reason, cut.stop_sequence) == ("max_tokens", None)
    stopped = client.messages.create(
        model="m", max_tokens=64, messages=_user("x"), stop_sequences=["END", "STOP"]
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "END")


def test_omit_usage_leaves_usage_out_of_the_body(server: FakeAnthropicServer) -> None:
    server.fake.enqueue(Behaviour(omit_usage=True))
    body = _raw_post(server, {"model": "m", "max_tokens": 5, "messages": _user("x")}).json()
    assert body["type"] == "message" and "usage" not in body


# --- Streaming ----------------------------------------------------------------------------------


def test_stream_helper_final_message_equals_the_create_answer(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    behaviour = Behaviour(
        thinking="Need the weather first",
        text="Checking the weather now",
        tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS, "id": "toolu_fixed"}],
        cached_tokens=3,
    )
    server.fake.enqueue(behaviour, behaviour)
    params: dict[str, Any] = {
        "model": "m",
        "max_tokens": 2048,
        "messages": _user("weather in Paris please"),
        "tools": [WEATHER_TOOL],
    }
    created = client.messages.create(**params)
    with client.messages.stream(**params) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) >= 2 and "".join(texts) == "Checking the weather now"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    for streamed, whole in zip(final.content, created.content, strict=True):
        streamed_dict = streamed.model_dump(exclude={"signature", "parsed_output"})
        assert streamed_dict == whole.model_dump(exclude={"signature"})
    assert final.content[2].type == "tool_use"
    assert final.content[2].input == {"city": "Paris", "unit": "celsius"}
    assert (final.stop_reason, final.stop_sequence) == ("tool_use", None)
    for field in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        assert getattr(final.usage, field) == getattr(created.usage, field), field


def test_raw_stream_events_come_in_the_real_order(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="m", max_tokens=64, messages=_user("Reply with: red green blue"), stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]
    assert start.type == "message_start"
    assert start.message.content == [] and start.message.stop_reason is None
    assert start.message.usage.output_tokens == 1
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert [d.text for d in deltas if d.type == "text_delta"] == ["red", " green", " blue"]
    closing = events[-2]
    assert closing.type == "message_delta"
    assert (closing.delta.stop_reason, closing.usage.output_tokens) == ("end_turn", 3)
    # "Reply with: red green blue" is 26 characters: 26 // 4 + 1.
    assert closing.usage.input_tokens == 7


def test_wire_stream_has_a_ping_after_the_first_block_start_and_matching_event_names(
    server: FakeAnthropicServer,
) -> None:
    server.fake.enqueue(Behaviour(text="ok", tool_calls=[{"name": "f", "input": {"a": 1}}]))
    response = _raw_post(server, {"model": "m", "max_tokens": 5, "messages": _user("x"), "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    frames = [f for f in response.text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    datas = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    text_deltas = [d["delta"]["text"] for d in datas if d.get("delta", {}).get("type") == "text_delta"]
    assert text_deltas == ["o", "k"]
    partial = [
        d["delta"]["partial_json"] for d in datas if d.get("delta", {}).get("type") == "input_json_delta"
    ]
    assert partial[0] == "" and len(partial) >= 3
    assert json.loads("".join(partial)) == {"a": 1}


def test_stream_error_event_raises_an_sdk_error_instead_of_a_clean_end(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(Behaviour(stream_error=529, drop_after_chunks=2))
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in client.messages.create(model="m", max_tokens=64, messages=_user("a b c"), stream=True):
            received.append(event.type)
    assert received == ["message_start", "content_block_start"]
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "overloaded_error"


def test_dropped_stream_gives_the_sdk_an_error_not_a_clean_end(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(Behaviour(text="one two three four", drop_after_chunks=4))
    received = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        for event in client.messages.create(model="m", max_tokens=64, messages=_user("x"), stream=True):
            received.append(event.type)
    # message_start, content_block_start, (ping), one delta.
    assert received == ["message_start", "content_block_start", "content_block_delta"]


def test_chunk_delay_spaces_out_stream_events(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(Behaviour(text="a b", chunk_delay=0.04))
    started = time.monotonic()
    events = list(client.messages.create(model="m", max_tokens=64, messages=_user("x"), stream=True))
    # 8 wire events (with the ping): 7 gaps.
    assert len(events) == 7
    assert time.monotonic() - started >= 7 * 0.04 * 0.9


# --- Errors, auth, script -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.InternalServerError, "overloaded_error"),
    ],
)
def test_scripted_status_raises_the_matching_sdk_error(
    server: FakeAnthropicServer,
    client: anthropic.Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    server.fake.enqueue(Behaviour(status=status, headers={"retry-after": "7"}))
    with pytest.raises(error_class) as caught:
        client.messages.create(model="m", max_tokens=64, messages=_user("hi"))
    error = caught.value
    assert error.status_code == status
    assert error.response.headers["retry-after"] == "7"
    assert error.request_id is not None and error.request_id.startswith("req_")
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == error_type and str(status) in body["error"]["message"]
    assert body["request_id"] == error.request_id


def test_overloaded_529_is_an_api_status_error_on_the_stream_helper_too(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(Behaviour(status=529))
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="m", max_tokens=64, messages=_user("hi")) as stream,
    ):
        stream.get_final_message()
    assert caught.value.status_code == 529


def test_scripted_error_body_is_sent_verbatim(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}
    server.fake.enqueue(Behaviour(status=400, error=body))
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="m", max_tokens=64, messages=_user("hi"))
    assert caught.value.body == body


def test_missing_max_tokens_is_a_bad_request_that_keeps_the_script(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.enqueue(Behaviour(text="kept"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", cast_to=Message, body={"model": "m", "messages": _user("hi")})
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert server.fake.pending == 1


def test_wrong_api_key_is_an_authentication_error_without_consuming_the_script(
    server: FakeAnthropicServer,
) -> None:
    server.fake.enqueue(Behaviour(text="kept"))
    wrong = anthropic.Anthropic(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
    with wrong, pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model="m", max_tokens=64, messages=_user("hi"))
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "authentication_error"
    assert server.fake.pending == 1


def test_x_api_key_header_is_accepted_and_a_missing_key_or_version_is_refused(
    server: FakeAnthropicServer,
) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": _user("Reply with: fine")}
    assert _raw_post(server, body).json()["content"][0]["text"] == "fine"

    no_key = httpx.post(
        f"{server.base_url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}, timeout=10
    )
    assert no_key.status_code == 401
    assert no_key.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }

    no_version = httpx.post(
        f"{server.base_url}/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=10
    )
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"


def test_delay_holds_back_the_response(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.fake.enqueue(Behaviour(delay=0.3))
    started = time.monotonic()
    client.messages.create(model="m", max_tokens=64, messages=_user("hi"))
    assert time.monotonic() - started >= 0.3

    server.fake.enqueue(Behaviour(delay=0.5))
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.1).messages.create(model="m", max_tokens=64, messages=_user("hi"))


def test_queued_behaviours_are_consumed_in_order_then_the_default(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.fake.default = Behaviour(text="default")
    server.fake.enqueue(Behaviour(text="first"), Behaviour(text="second"))
    answers = []
    for _ in range(3):
        block = client.messages.create(model="m", max_tokens=64, messages=_user("x")).content[0]
        assert block.type == "text"
        answers.append(block.text)
    assert answers == ["first", "second", "default"]
    assert server.fake.pending == 0


def test_requests_are_recorded_with_path_lowercased_headers_and_body(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=32,
        messages=_user("hi"),
        metadata={"user_id": "u1"},
        extra_headers={"X-Custom-Thing": "yes"},
    )
    (sent,) = server.fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-custom-thing"] == "yes"
    assert sent.headers["anthropic-version"]
    assert sent.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": "u1"},
    }


def test_count_tokens_and_models_answer_in_anthropic_shape(
    server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    # 5 characters // 4 + 1 message.
    assert client.messages.count_tokens(model="m", messages=_user("hello")).input_tokens == 2
    models = list(client.models.list())
    assert [m.id for m in models] == server.fake.models
    assert all(m.type == "model" for m in models)


# --- Runner -------------------------------------------------------------------------------------


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_server_exit_stops_serving_and_releases_the_port() -> None:
    with FakeAnthropicServer() as running:
        port = running.port
        assert running.base_url == f"http://127.0.0.1:{port}"
        assert _accepting(port)
    assert not _accepting(port)


def test_module_runs_in_the_foreground_with_an_api_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tests.fakes.anthropic_server", "--port", str(port), "--api-key", "k1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not _accepting(port):
            assert process.poll() is None, "the fake server exited early"
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.05)
        with anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="k1", max_retries=0) as sdk:
            reply = sdk.messages.create(model="m", max_tokens=8, messages=_user("Reply with: up"))
        assert reply.content[0].type == "text" and reply.content[0].text == "up"
    finally:
        process.terminate()
        process.wait(timeout=10)
