"""The fake Gemini server speaks the real generateContent wire format: checked with ``google-genai``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from tests.fakes.gemini_server import Behaviour, FakeGemini, FakeGeminiServer

KEY = "gm-fake-test"
MODEL = "gemini-2.5-flash"
REPO = Path(__file__).resolve().parent.parent
WEATHER_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city",
            parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
        )
    ]
)
WEATHER_ARGS = '{"city": "Paris", "unit": "celsius"}'


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(fake=FakeGemini(api_key=KEY)) as running:
        yield running


def _client(server: FakeGeminiServer, key: str = KEY, timeout_ms: int = 10_000) -> genai.Client:
    options = types.HttpOptions(base_url=server.base_url, api_version="v1beta", timeout=timeout_ms)
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture
def client(server: FakeGeminiServer) -> Iterator[genai.Client]:
    with _client(server) as sdk:
        yield sdk


def _config(**kwargs: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(**kwargs)


def _raw_post(server: FakeGeminiServer, suffix: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    url = f"{server.base_url}/v1beta/models/{MODEL}:{suffix}"
    return httpx.post(url, json=body, headers={"x-goog-api-key": KEY, **headers}, timeout=10)


def _user_body(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# --- generateContent ----------------------------------------------------------------------------


def test_generate_content_answers_reply_with_text_and_counts_usage_by_the_documented_rule(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    response = client.models.generate_content(
        model=MODEL, contents="Reply with: Hello big world", config=_config(system_instruction="Be brief.")
    )
    assert response.text == "Hello big world"
    assert response.model_version == MODEL
    assert response.response_id
    assert response.candidates is not None
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.content is not None and candidate.content.role == "model"
    usage = response.usage_metadata
    assert usage is not None
    # (27 + 9 characters) // 4 + 2 (one content and the system instruction); 3 text deltas.
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (11, 3, 14)
    assert usage.thoughts_token_count is None and usage.cached_content_token_count is None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    sent = server.fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", f"/v1beta/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.body["systemInstruction"]["parts"] == [{"text": "Be brief."}]


def test_without_reply_with_the_answer_echoes_the_last_user_text(client: genai.Client) -> None:
    contents = [
        types.Content(role="user", parts=[types.Part(text="first")]),
        types.Content(role="model", parts=[types.Part(text="ok")]),
        types.Content(role="user", parts=[types.Part(text="second question")]),
    ]
    response = client.models.generate_content(model=MODEL, contents=contents)
    assert response.text == "echo: second question"
    assert response.usage_metadata is not None
    # 5 + 2 + 15 characters // 4 + 3 contents.
    assert response.usage_metadata.prompt_token_count == 8


def test_function_call_comes_back_as_a_whole_call_with_dict_args_and_stop(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(
        Behaviour(tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}]),
        Behaviour(
            text="Checking", tool_calls=[{"name": "get_weather", "input": {"city": "Oslo"}, "id": "call_1"}]
        ),
    )
    config = _config(
        tools=[WEATHER_TOOL],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_weather"]
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    first = client.models.generate_content(model=MODEL, contents="weather?", config=config)
    assert first.function_calls is not None
    (call,) = first.function_calls
    assert (call.name, call.args) == ("get_weather", {"city": "Paris", "unit": "celsius"})
    assert first.candidates is not None and first.candidates[0].finish_reason == types.FinishReason.STOP
    assert first.usage_metadata is not None and first.usage_metadata.candidates_token_count == 3
    sent = server.fake.requests[-1].body
    assert sent["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"

    second = client.models.generate_content(model=MODEL, contents="weather?", config=config)
    assert second.candidates is not None and second.candidates[0].content is not None
    parts = second.candidates[0].content.parts
    assert parts is not None and [p.text is not None for p in parts] == [True, False]
    assert second.function_calls is not None
    assert (second.function_calls[0].id, second.function_calls[0].args) == ("call_1", {"city": "Oslo"})


def test_function_response_turn_keeps_answering_the_original_prompt(client: genai.Client) -> None:
    contents = [
        types.Content(role="user", parts=[types.Part(text="Reply with: It is sunny")]),
        types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Oslo"}))],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part(function_response=types.FunctionResponse(name="get_weather", response={"t": 21}))
            ],
        ),
    ]
    response = client.models.generate_content(model=MODEL, contents=contents)
    assert response.text == "It is sunny"
    assert response.usage_metadata is not None
    # 23 + len('{"city": "Oslo"}') 16 + len('{"t": 21}') 9 = 48 characters // 4 + 3 contents.
    assert response.usage_metadata.prompt_token_count == 15


def test_thoughts_are_returned_when_asked_and_always_counted(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    behaviour = Behaviour(thinking="The user wants a greeting", text="Hi there")
    server.fake.enqueue(behaviour, behaviour)
    shown = client.models.generate_content(
        model=MODEL,
        contents="greet me",
        config=_config(thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)),
    )
    assert shown.candidates is not None and shown.candidates[0].content is not None
    parts = shown.candidates[0].content.parts
    assert parts is not None
    thought, answer = parts
    assert (thought.thought, thought.text) == (True, "The user wants a greeting")
    assert (answer.thought, answer.text) == (None, "Hi there")
    assert answer.thought_signature
    assert shown.text == "Hi there"
    usage = shown.usage_metadata
    assert usage is not None
    # 5 thought deltas, 2 text deltas, "greet me" = 8 // 4 + 1.
    assert (usage.thoughts_token_count, usage.candidates_token_count, usage.total_token_count) == (5, 2, 10)

    hidden = client.models.generate_content(model=MODEL, contents="greet me")
    assert hidden.candidates is not None and hidden.candidates[0].content is not None
    hidden_parts = hidden.candidates[0].content.parts
    assert hidden_parts is not None and [p.thought for p in hidden_parts] == [None]
    assert hidden.usage_metadata is not None and hidden.usage_metadata.thoughts_token_count == 5


def test_thought_signature_rides_on_the_first_function_call(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(
        Behaviour(thinking="plan", tool_calls=[{"name": "a", "input": {}}, {"name": "b", "input": {}}])
    )
    response = client.models.generate_content(model=MODEL, contents="go")
    assert response.candidates is not None and response.candidates[0].content is not None
    parts = response.candidates[0].content.parts
    assert parts is not None
    assert [p.function_call.name for p in parts if p.function_call] == ["a", "b"]
    assert [bool(p.thought_signature) for p in parts] == [True, False]


def test_scripted_counts_cached_tokens_and_finish_reason_are_reported(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(
        Behaviour(
            prompt_tokens=50, output_tokens=7, cached_tokens=20, thoughts_tokens=4, finish_reason="MAX_TOKENS"
        )
    )
    response = client.models.generate_content(model=MODEL, contents="x")
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (50, 7, 4)
    assert (usage.cached_content_token_count, usage.total_token_count) == (20, 61)
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_omit_usage_leaves_usage_metadata_out(server: FakeGeminiServer) -> None:
    server.fake.enqueue(Behaviour(omit_usage=True))
    body = _raw_post(server, "generateContent", _user_body("x")).json()
    assert "usageMetadata" not in body and body["candidates"][0]["content"]["parts"] == [{"text": "echo: x"}]


# --- JSON mode ----------------------------------------------------------------------------------


class Answer(BaseModel):
    answer: str


class Report(BaseModel):
    city: str
    degrees: int
    sunny: bool
    tags: list[str]


def test_json_mode_builds_json_from_the_schema_with_the_reply_in_string_fields(client: genai.Client) -> None:
    one = client.models.generate_content(
        model=MODEL,
        contents="Reply with: Paris",
        config=_config(response_mime_type="application/json", response_schema=Answer),
    )
    assert json.loads(one.text or "") == {"answer": "Paris"}
    assert isinstance(one.parsed, Answer) and one.parsed.answer == "Paris"

    nested = client.models.generate_content(
        model=MODEL,
        contents="Reply with: Oslo",
        config=_config(
            response_mime_type="application/json", response_json_schema=Report.model_json_schema()
        ),
    )
    assert json.loads(nested.text or "") == {"city": "Oslo", "degrees": 0, "sunny": True, "tags": ["Oslo"]}

    free = client.models.generate_content(
        model=MODEL, contents="Reply with: hi", config=_config(response_mime_type="application/json")
    )
    assert json.loads(free.text or "") == {"text": "hi"}


# --- streamGenerateContent ----------------------------------------------------------------------


def test_stream_chunks_concatenate_to_the_non_stream_text_with_cumulative_usage(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    whole = client.models.generate_content(model=MODEL, contents="Reply with: red green blue")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Reply with: red green blue"))
    assert server.fake.requests[-1].path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert server.fake.requests[-1].query == {"alt": "sse"}
    assert len(chunks) == 3
    assert "".join(c.text or "" for c in chunks) == whole.text == "red green blue"
    finishes = [c.candidates[0].finish_reason if c.candidates else None for c in chunks]
    assert finishes == [None, None, types.FinishReason.STOP]
    counts = [c.usage_metadata.candidates_token_count if c.usage_metadata else None for c in chunks]
    assert counts == [1, 2, 3]
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert len({c.response_id for c in chunks}) == 1


def test_stream_splits_a_one_word_reply_and_sends_a_function_call_whole(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(Behaviour(text="ok", tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}]))
    config = _config(
        tools=[WEATHER_TOOL], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="weather?", config=config))
    assert [c.text for c in chunks[:2]] == ["o", "k"]
    assert chunks[2].function_calls is not None
    assert chunks[2].function_calls[0].args == {"city": "Paris", "unit": "celsius"}
    assert len(chunks) == 3
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.candidates_token_count == 5


def test_stream_sends_thought_chunks_first_when_asked(server: FakeGeminiServer, client: genai.Client) -> None:
    server.fake.enqueue(Behaviour(thinking="hmm ok", text="Sunny today"))
    config = _config(thinking_config=types.ThinkingConfig(include_thoughts=True))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="weather", config=config))
    flags = []
    for chunk in chunks:
        assert chunk.candidates and chunk.candidates[0].content and chunk.candidates[0].content.parts
        flags.append(bool(chunk.candidates[0].content.parts[0].thought))
    assert flags == [True, True, False, False]
    thoughts = [c.usage_metadata.thoughts_token_count if c.usage_metadata else None for c in chunks]
    assert thoughts == [1, 2, 2, 2]
    assert "".join(c.text or "" for c in chunks) == "Sunny today"


def test_wire_stream_is_crlf_sse_and_without_alt_sse_a_json_array(server: FakeGeminiServer) -> None:
    sse = _raw_post(server, "streamGenerateContent?alt=sse", _user_body("Reply with: a b"))
    assert sse.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in sse.text.split("\r\n\r\n") if f]
    assert len(frames) == 2 and all(f.startswith("data: {") for f in frames)
    sse_chunks = [json.loads(f.removeprefix("data: ")) for f in frames]

    array = _raw_post(server, "streamGenerateContent", _user_body("Reply with: a b"))
    assert array.headers["content-type"].startswith("application/json")
    array_chunks = json.loads(array.text)
    assert isinstance(array_chunks, list)
    strip = [{k: v for k, v in c.items() if k != "responseId"} for c in (*sse_chunks, *array_chunks)]
    assert strip[:2] == strip[2:]
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in array_chunks] == ["a", " b"]


def test_stream_error_chunk_raises_the_sdk_server_error(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(Behaviour(stream_error=503, drop_after_chunks=2))
    received = []
    with pytest.raises(errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="a b c d e"):
            received.append(chunk.text)
    assert received == ["echo:", " a"]
    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")


def test_stream_error_in_a_json_array_stream_is_its_last_item(server: FakeGeminiServer) -> None:
    server.fake.enqueue(Behaviour(stream_error=500, drop_after_chunks=1))
    items = json.loads(_raw_post(server, "streamGenerateContent", _user_body("a b c")).text)
    assert len(items) == 2 and "candidates" in items[0]
    assert items[1] == {"error": {"code": 500, "message": items[1]["error"]["message"], "status": "INTERNAL"}}


def test_dropped_stream_gives_the_sdk_an_error_not_a_clean_end(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(Behaviour(drop_after_chunks=2))
    received = []
    with pytest.raises((httpx2.TransportError, httpx.TransportError)):
        for chunk in client.models.generate_content_stream(model=MODEL, contents="a b c d e"):
            received.append(chunk.text)
    assert received == ["echo:", " a"]


def test_chunk_delay_spaces_out_stream_chunks(server: FakeGeminiServer, client: genai.Client) -> None:
    server.fake.enqueue(Behaviour(text="a b c d", chunk_delay=0.05))
    arrivals = [time.monotonic() for _ in client.models.generate_content_stream(model=MODEL, contents="x")]
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] >= 3 * 0.05 * 0.9


# --- Errors, auth, script -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class", "status"),
    [
        (400, errors.ClientError, "INVALID_ARGUMENT"),
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, errors.ServerError, "INTERNAL"),
        (503, errors.ServerError, "UNAVAILABLE"),
    ],
)
def test_scripted_status_raises_the_matching_sdk_error(
    server: FakeGeminiServer, client: genai.Client, code: int, error_class: type[errors.APIError], status: str
) -> None:
    server.fake.enqueue(Behaviour(status=code, headers={"retry-after": "7"}))
    with pytest.raises(error_class) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    error = caught.value
    assert (error.code, error.status) == (code, status)
    assert error.message is not None and str(code) in error.message
    assert error.response is not None and error.response.headers["retry-after"] == "7"


def test_scripted_error_on_a_stream_request_raises_before_any_chunk(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.enqueue(Behaviour(status=429))
    with pytest.raises(errors.ClientError) as caught:
        list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    assert caught.value.code == 429


def test_scripted_error_body_is_sent_verbatim(server: FakeGeminiServer, client: genai.Client) -> None:
    body = {
        "error": {
            "code": 400,
            "message": "The input token count exceeds the limit",
            "status": "INVALID_ARGUMENT",
        }
    }
    server.fake.enqueue(Behaviour(status=400, error=body))
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.details == body


def test_wrong_api_key_is_400_api_key_invalid_without_consuming_the_script(server: FakeGeminiServer) -> None:
    server.fake.enqueue(Behaviour(text="kept"))
    with _client(server, key="wrong") as wrong, pytest.raises(errors.ClientError) as caught:
        wrong.models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert server.fake.pending == 1


def test_key_query_parameter_is_accepted_and_a_missing_key_is_403(server: FakeGeminiServer) -> None:
    url = f"{server.base_url}/v1beta/models/{MODEL}:generateContent"
    by_query = httpx.post(f"{url}?key={KEY}", json=_user_body("Reply with: fine"), timeout=10)
    assert by_query.json()["candidates"][0]["content"]["parts"][0]["text"] == "fine"
    missing = httpx.post(url, json=_user_body("x"), timeout=10)
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"


def test_empty_contents_is_invalid_argument_and_keeps_the_script(server: FakeGeminiServer) -> None:
    server.fake.enqueue(Behaviour(text="kept"))
    response = _raw_post(server, "generateContent", {"contents": []})
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert server.fake.pending == 1


def test_delay_holds_back_the_response(server: FakeGeminiServer, client: genai.Client) -> None:
    server.fake.enqueue(Behaviour(delay=0.3))
    started = time.monotonic()
    client.models.generate_content(model=MODEL, contents="hi")
    assert time.monotonic() - started >= 0.3

    server.fake.enqueue(Behaviour(delay=0.5))
    with (
        _client(server, timeout_ms=100) as impatient,
        pytest.raises((httpx2.TimeoutException, httpx.TimeoutException)),
    ):
        impatient.models.generate_content(model=MODEL, contents="hi")


def test_queued_behaviours_are_consumed_in_order_then_the_default(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    server.fake.default = Behaviour(text="default")
    server.fake.enqueue(Behaviour(text="first"), Behaviour(text="second"))
    answers = [client.models.generate_content(model=MODEL, contents="x").text for _ in "123"]
    assert answers == ["first", "second", "default"]
    assert server.fake.pending == 0


def test_count_tokens_and_models_answer_in_gemini_shape(
    server: FakeGeminiServer, client: genai.Client
) -> None:
    # 5 characters // 4 + 1 content.
    assert client.models.count_tokens(model=MODEL, contents="hello").total_tokens == 2
    names = [m.name for m in client.models.list()]
    assert names == [f"models/{m}" for m in server.fake.models]


# --- Runner -------------------------------------------------------------------------------------


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_server_exit_stops_serving_and_releases_the_port() -> None:
    with FakeGeminiServer() as running:
        port = running.port
        assert running.base_url == f"http://127.0.0.1:{port}"
        assert _accepting(port)
    assert not _accepting(port)


def test_module_runs_in_the_foreground_with_an_api_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tests.fakes.gemini_server", "--port", str(port), "--api-key", "k1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not _accepting(port):
            assert process.poll() is None, "the fake server exited early"
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.05)
        options = types.HttpOptions(base_url=f"http://127.0.0.1:{port}", api_version="v1beta")
        with genai.Client(api_key="k1", http_options=options) as sdk:
            reply = sdk.models.generate_content(model=MODEL, contents="Reply with: up")
        assert reply.text == "up"
    finally:
        process.terminate()
        process.wait(timeout=10)
