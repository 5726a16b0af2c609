"""The fake OpenAI server speaks OpenAI's real wire formats: checked with the official ``openai`` SDK."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam
from openai.types.responses import FunctionToolParam

from tests.fakes.openai_server import Behaviour, FakeOpenAI, FakeOpenAIServer

KEY = "sk-fake-test"
REPO = Path(__file__).resolve().parent.parent
WEATHER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA},
}
WEATHER_RESPONSES_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "parameters": WEATHER_SCHEMA,
    "strict": False,
}
WEATHER_ARGS = '{"city": "Paris", "unit": "celsius"}'


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(fake=FakeOpenAI(api_key=KEY)) as running:
        yield running


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def _user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


# --- Chat Completions ---------------------------------------------------------------------------


def test_chat_completion_answers_reply_with_text_and_counts_usage_by_the_documented_rule(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Reply with: Hello big world"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello big world"
    assert choice.message.refusal is None
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    usage = completion.usage
    assert usage is not None
    # (9 + 27 characters) // 4 + 2 messages; 3 words in the reply.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 3, 14)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_completion_without_reply_with_echoes_the_last_user_text(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ],
    )
    assert completion.choices[0].message.content == "echo: second question"


def test_chat_completion_reports_scripted_token_counts_and_details(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(
        Behaviour(
            text="fine", prompt_tokens=120, completion_tokens=30, cached_tokens=100, reasoning_tokens=10
        )
    )
    usage = client.chat.completions.create(model="m", messages=_user("hi")).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 30, 150)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 100
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 10


def test_chat_stream_with_include_usage_sends_null_usage_on_every_chunk_then_a_usage_chunk(
    client: openai.OpenAI,
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=_user("Reply with: one two three four"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    *content_chunks, usage_chunk = chunks
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert content_chunks[0].choices[0].delta.content == ""
    texts = [c.choices[0].delta.content for c in content_chunks if c.choices[0].delta.content]
    assert len(texts) >= 2
    assert "".join(texts) == "one two three four"
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    assert content_chunks[-1].choices[0].delta.content is None
    for chunk in content_chunks:
        assert "usage" in chunk.model_fields_set and chunk.usage is None
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 4
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + 4


def test_chat_stream_without_include_usage_sends_no_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=_user("Reply with: a b"), stream=True))
    assert all(chunk.choices for chunk in chunks)
    assert all("usage" not in chunk.model_fields_set for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_omit_usage_leaves_usage_out_even_when_asked(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fake.enqueue(Behaviour(omit_usage=True), Behaviour(omit_usage=True))
    chunks = list(
        client.chat.completions.create(
            model="m", messages=_user("hi"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert client.chat.completions.create(model="m", messages=_user("hi")).usage is None


def test_chat_streamed_tool_call_arguments_arrive_in_fragments(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(Behaviour(tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}]))
    chunks = list(
        client.chat.completions.create(
            model="m", messages=_user("weather?"), tools=[WEATHER_TOOL], stream=True
        )
    )
    deltas = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    opening, *fragments = deltas
    assert opening.index == 0 and opening.type == "function"
    assert opening.id is not None and opening.id.startswith("call_")
    assert opening.function is not None and opening.function.name == "get_weather"
    assert len(fragments) >= 2
    assert all(f.id is None and f.function is not None for f in fragments)
    arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_chat_stream_helper_accumulates_the_tool_call_into_the_final_completion(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(Behaviour(tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}]))
    with client.chat.completions.stream(
        model="m", messages=_user("weather?"), tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}


def test_chat_tool_call_without_text_has_null_content(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(Behaviour(tool_calls=[{"name": "get_weather", "arguments": '{"city":"Oslo"}'}]))
    message = client.chat.completions.create(model="m", messages=_user("weather?")).choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.arguments == '{"city":"Oslo"}'  # type: ignore[union-attr]


def test_chat_length_finish_reason_is_reported(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fake.enqueue(Behaviour(text="cut", finish_reason="length"))
    assert client.chat.completions.create(model="m", messages=_user("x")).choices[0].finish_reason == "length"


# --- Responses ----------------------------------------------------------------------------------


def test_responses_create_returns_output_text_usage_and_echoed_fields(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o-mini",
        instructions="Be terse.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Reply with: All good"}]}],
        max_output_tokens=64,
        temperature=0.5,
        metadata={"k": "v"},
    )
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "gpt-4o-mini"
    assert response.output_text == "All good"
    assert (response.instructions, response.max_output_tokens, response.temperature) == ("Be terse.", 64, 0.5)
    assert response.metadata == {"k": "v"}
    assert response.error is None and response.incomplete_details is None
    message = response.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    assert response.usage is not None
    # (9 + 20 characters) // 4 + 2 messages (instructions and one input item); 2 words.
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 2, 11)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_string_input_is_echoed(client: openai.OpenAI) -> None:
    assert client.responses.create(model="m", input="plain words").output_text == "echo: plain words"


def test_responses_stream_events_come_in_openai_order_with_consecutive_sequence_numbers(
    client: openai.OpenAI,
) -> None:
    events = list(client.responses.create(model="m", input="Reply with: red green blue", stream=True))
    kinds = [event.type for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas == 3
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "red green blue"
    first, last = events[0], events[-1]
    assert first.type == "response.created" and first.response.status == "in_progress"
    assert last.type == "response.completed" and last.response.id == first.response.id
    assert last.response.usage is not None and last.response.usage.output_tokens == 3


def test_responses_stream_helper_final_response_has_text_and_usage(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(
        Behaviour(prompt_tokens=50, completion_tokens=7, cached_tokens=20, reasoning_tokens=3)
    )
    with client.responses.stream(model="m", input="Reply with: streamed fine") as stream:
        final = stream.get_final_response()
    assert final.output_text == "streamed fine"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (50, 7, 57)
    assert final.usage.input_tokens_details.cached_tokens == 20
    assert final.usage.output_tokens_details.reasoning_tokens == 3


def test_responses_function_call_in_body_and_stream(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    behaviour = Behaviour(
        tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS, "call_id": "call_abc"}]
    )
    server.fake.enqueue(behaviour, behaviour)
    tools = [WEATHER_RESPONSES_TOOL]

    response = client.responses.create(model="m", input="weather?", tools=tools)
    (item,) = response.output
    assert item.type == "function_call"
    assert (item.name, item.call_id, item.arguments, item.status) == (
        "get_weather",
        "call_abc",
        WEATHER_ARGS,
        "completed",
    )
    assert item.id is not None and item.id.startswith("fc_")

    with client.responses.stream(model="m", input="weather?", tools=tools) as stream:
        events = list(stream)
        final = stream.get_final_response()
    arg_deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(arg_deltas) >= 2
    structure = [
        e.type for e in events if e.type.endswith((".done", ".added")) and "output_text" not in e.type
    ]
    assert structure == [
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    (final_item,) = final.output
    assert final_item.type == "function_call"
    assert json.loads(final_item.arguments) == {"city": "Paris", "unit": "celsius"}


def test_responses_length_finish_is_an_incomplete_response(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(Behaviour(text="cut short", finish_reason="length"))
    server.fake.enqueue(Behaviour(text="cut short", finish_reason="length"))
    response = client.responses.create(model="m", input="x", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "cut short"

    events = list(client.responses.create(model="m", input="x", stream=True))
    terminal = events[-1]
    assert terminal.type == "response.incomplete"
    assert not any(e.type == "response.completed" for e in events)
    assert terminal.response.status == "incomplete"
    assert terminal.response.usage is not None


# --- Errors, auth, script -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_scripted_status_raises_the_matching_sdk_error(
    server: FakeOpenAIServer, client: openai.OpenAI, status: int, error_class: type[openai.APIStatusError]
) -> None:
    server.fake.enqueue(Behaviour(status=status, headers={"retry-after": "7"}))
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model="m", messages=_user("hi"))
    assert caught.value.status_code == status
    assert caught.value.response.headers["retry-after"] == "7"
    body = caught.value.body
    assert isinstance(body, dict) and str(status) in body["message"]
    assert set(body) >= {"message", "type", "param", "code"}


def test_rate_limit_error_uses_openai_type_and_code(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fake.enqueue(Behaviour(status=429))
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="m", input="hi", stream=True)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "requests"


def test_scripted_error_body_is_sent_verbatim(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    error = {
        "message": "context too long",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    body = {"error": error}
    server.fake.enqueue(Behaviour(status=400, error=body))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=_user("hi"))
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"


def test_wrong_api_key_gets_401_invalid_api_key_without_consuming_the_script(
    server: FakeOpenAIServer,
) -> None:
    server.fake.enqueue(Behaviour(text="kept"))
    wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="m", messages=_user("hi"))
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert server.fake.pending == 1


def test_delay_holds_back_the_response_headers(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fake.enqueue(Behaviour(delay=0.3))
    started = time.monotonic()
    client.chat.completions.create(model="m", messages=_user("hi"))
    assert time.monotonic() - started >= 0.3

    server.fake.enqueue(Behaviour(delay=0.5))
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.1).chat.completions.create(model="m", messages=_user("hi"), stream=True)


def test_chunk_delay_spaces_out_stream_events(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fake.enqueue(Behaviour(text="a b c", chunk_delay=0.05))
    arrivals = [
        time.monotonic() for _ in client.chat.completions.create(model="m", messages=_user("x"), stream=True)
    ]
    # role chunk, 3 pieces, finish chunk: 4 gaps.
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 4 * 0.05 * 0.9


def test_queued_behaviours_are_consumed_in_order_then_the_default(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.default = Behaviour(text="default")
    server.fake.enqueue(Behaviour(text="first"), Behaviour(text="second"))
    answers = [
        client.chat.completions.create(model="m", messages=_user("x")).choices[0].message.content
        for _ in "123"
    ]
    assert answers == ["first", "second", "default"]
    assert server.fake.pending == 0


def test_requests_are_recorded_with_path_lowercased_headers_and_body(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="m1", messages=_user("hi"), extra_headers={"X-Custom-Thing": "yes"})
    client.responses.create(model="m2", input="hi")
    chat, responses = server.fake.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert chat.headers["x-custom-thing"] == "yes"
    assert chat.body == {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}
    assert (responses.path, responses.body["model"]) == ("/v1/responses", "m2")


def test_drop_after_chunks_aborts_the_chat_stream_without_done(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(Behaviour(text="one two three four", drop_after_chunks=2))
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=_user("x"), stream=True):
            received.append(chunk)
    assert len(received) == 2


def test_drop_after_chunks_aborts_the_responses_stream_before_completed(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.fake.enqueue(Behaviour(drop_after_chunks=5))
    received = []
    with pytest.raises(openai.APIConnectionError):
        for event in client.responses.create(model="m", input="a b c d", stream=True):
            received.append(event.type)
    assert len(received) == 5
    assert "response.completed" not in received


def test_any_path_prefix_is_served(server: FakeOpenAIServer) -> None:
    base = f"{server.root_url}/v1beta/openai"
    with openai.OpenAI(base_url=base, api_key=KEY, max_retries=0) as google_style:
        reply = google_style.chat.completions.create(model="gemini", messages=_user("Reply with: ok"))
    assert reply.choices[0].message.content == "ok"
    assert server.fake.requests[-1].path == "/v1beta/openai/chat/completions"


def test_models_are_listed_in_openai_shape(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == server.fake.models
    assert all(m.object == "model" and m.owned_by and m.created for m in models)


# --- Runner -------------------------------------------------------------------------------------


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_server_exit_stops_serving_and_releases_the_port() -> None:
    with FakeOpenAIServer() as running:
        port = running.port
        assert running.base_url == f"http://127.0.0.1:{port}/v1"
        assert _accepting(port)
    assert not _accepting(port)


def test_module_runs_in_the_foreground_with_an_api_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), "--api-key", "k1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not _accepting(port):
            assert process.poll() is None, "the fake server exited early"
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.05)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k1", max_retries=0) as sdk:
            reply = sdk.chat.completions.create(model="m", messages=_user("Reply with: up"))
        assert reply.choices[0].message.content == "up"
    finally:
        process.terminate()
        process.wait(timeout=10)
