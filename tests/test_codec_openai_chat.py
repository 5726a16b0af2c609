"""The Chat Completions codec (format "chat"), both directions, streams and whole answers.

Provider payloads under ``tests/golden/openai_chat/`` are written in the exact shapes OpenAI,
vLLM, DeepSeek, Ollama and Groq send (ids, role chunk, tool-call fragments, usage chunk,
``obfuscation``, ``x_groq``…). What the codec sends to clients is checked against the official
OpenAI SDK's typed models and its streaming accumulator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.canonical import (
    Finish,
    ImagePart,
    Message,
    OutputFormat,
    Reasoning,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ThinkingSignature,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageUpdate,
)
from aistats_gateway.formats.base import Codec, ResponseContext, Target
from aistats_gateway.formats.openai_chat import CODEC, OPENAI_CODEC
from aistats_gateway.formats.sse import SSEDecoder

GOLDEN = Path(__file__).parent / "golden" / "openai_chat"
GEN_ID = "gen_01JZ8Q4T5W6X7Y8Z9A0B1C2D3E"
CREATED = 1767225600
TARGET = Target(provider="local-vllm", model="Qwen/Qwen3-8B")
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def golden_json(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name).read_text())


def golden_events(name: str) -> list[Any]:
    decoder = SSEDecoder()
    return decoder.feed((GOLDEN / name).read_bytes()) + decoder.flush()


def decode_stream(name: str) -> tuple[list[StreamEvent], Any]:
    decoder = CODEC.stream_decoder()
    events: list[StreamEvent] = []
    for sse in golden_events(name):
        events.extend(decoder.feed(sse))
    return events, decoder


def ctx(wants_usage: bool = True) -> ResponseContext:
    return ResponseContext(
        generation_id=GEN_ID, model="acme/model-x", created=CREATED, request={}, wants_usage=wants_usage
    )


def refusal(call: Any, *args: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        call(*args)
    assert info.value.status == 400
    return info.value


def chat_body(**overrides: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **overrides}


def request(**overrides: Any) -> Request:
    return Request(model="m", messages=[Message("user", [TextPart("hi")])], **overrides)


def frames_payloads(frames: list[bytes]) -> list[Any]:
    """The JSON payload of each ``data:`` frame (the literal ``[DONE]`` kept as a string)."""
    out = []
    for frame in frames:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame
        data = frame[len(b"data: ") : -2]
        out.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return out


def sdk_client(body: bytes, *, stream: bool) -> openai.OpenAI:
    """An OpenAI SDK client whose HTTP calls all answer ``body``."""

    def handler(_: httpx.Request) -> httpx.Response:
        media = "text/event-stream" if stream else "application/json"
        return httpx.Response(200, content=body, headers={"content-type": media})

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


def test_codec_instances_satisfy_the_codec_protocol() -> None:
    codecs: list[Codec] = [CODEC, OPENAI_CODEC]
    assert [codec.name for codec in codecs] == ["chat", "chat"]


# --- client side: decode_request -------------------------------------------------------------


def test_decode_golden_agent_request_into_canonical_fields() -> None:
    req = CODEC.decode_request(golden_json("client_request_agent.json"))

    assert req.model == "anthropic/claude-sonnet-4.5"
    # developer + a later system message, hoisted in order
    assert req.system == [
        TextPart("You are a travel assistant. Answer in English."),
        TextPart("Keep answers under 50 words."),
    ]
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "user"]
    user = req.messages[0].parts
    assert user[0] == TextPart("What is the weather where this photo was taken, and in Paris?")
    assert user[1] == ImagePart(
        url="https://upload.wikimedia.org/wikipedia/commons/a/a8/Tour_Eiffel.jpg", detail="high"
    )
    assert user[2] == ImagePart(data=PNG_B64, media_type="image/png")
    assert req.messages[1].parts == [
        ToolCallPart("call_9Kd2mX4bQe1Rz8vLp0sTn3Yw", "get_weather", '{"city":"Lyon","unit":"celsius"}'),
        ToolCallPart("call_Hq7ZtV2wLr5Nc1Xb6Ms0Kd8P", "get_weather", '{"city":"Paris","unit":"celsius"}'),
    ]
    # both tool messages merged into one user turn, in order, named after their calls
    assert req.messages[2].parts == [
        ToolResultPart(
            "call_9Kd2mX4bQe1Rz8vLp0sTn3Yw", [TextPart('{"temp":21,"sky":"clear"}')], name="get_weather"
        ),
        ToolResultPart(
            "call_Hq7ZtV2wLr5Nc1Xb6Ms0Kd8P", [TextPart('{"temp":18,"sky":"rain"}')], name="get_weather"
        ),
    ]
    assert req.messages[3].parts == [TextPart("Summarise both in one JSON object.")]

    tool = req.tools[0]
    assert (tool.name, tool.description, tool.strict) == ("get_weather", "Current weather for a city.", True)
    assert tool.parameters == golden_json("client_request_agent.json")["tools"][0]["function"]["parameters"]
    assert req.tool_choice == ToolChoice("auto")
    assert req.parallel_tool_calls is True
    assert req.max_output_tokens == 1024
    assert (req.temperature, req.top_p) == (0.2, 0.9)
    assert req.stop == ["\n\nUser:"]
    assert req.output_format is not None
    assert (req.output_format.type, req.output_format.name, req.output_format.strict) == (
        "json_schema",
        "weather_summary",
        True,
    )
    assert req.output_format.schema is not None and req.output_format.schema["required"] == ["lyon", "paris"]
    assert req.reasoning == Reasoning(effort="low")
    assert req.user == "user-7f3a9c"
    assert req.stream is True
    # seed kept for the provider; n=1 (the default), store, metadata, stream_options skipped
    assert req.extras == {"seed": 42}


def test_decode_plain_string_messages_and_defaults() -> None:
    req = CODEC.decode_request(chat_body())
    assert req.messages == [Message("user", [TextPart("hi")])]
    assert req.system == [] and req.tools == [] and req.tool_choice is None
    assert req.stream is False and req.reasoning is None and req.output_format is None


def test_decode_system_content_given_as_text_parts() -> None:
    body = chat_body(messages=[{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}])
    assert CODEC.decode_request(body).system == [TextPart("Be brief.")]


@pytest.mark.parametrize("kind", ["input_audio", "file"])
def test_decode_refuses_audio_and_file_parts_naming_the_part_type(kind: str) -> None:
    part = {"type": kind, kind: {"data": "AAAA", "format": "wav"}}
    body = chat_body(messages=[{"role": "user", "content": [part]}])
    error = refusal(CODEC.decode_request, body)
    assert error.param == "messages[0].content[0].type"
    assert f"'{kind}'" in error.message


def test_decode_refuses_custom_tools_naming_the_tool() -> None:
    body = chat_body(tools=[{"type": "custom", "custom": {"name": "grep"}}])
    error = refusal(CODEC.decode_request, body)
    assert error.param == "tools[0].type"
    assert "'custom'" in error.message


@pytest.mark.parametrize(
    ("wire", "choice"),
    [
        ("auto", ToolChoice("auto")),
        ("none", ToolChoice("none")),
        ("required", ToolChoice("required")),
        ({"type": "function", "function": {"name": "get_weather"}}, ToolChoice("tool", "get_weather")),
    ],
)
def test_decode_tool_choice(wire: Any, choice: ToolChoice) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    assert CODEC.decode_request(chat_body(tools=tools, tool_choice=wire)).tool_choice == choice


def test_decode_allowed_tools_keeps_only_the_allowed_tools() -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b", "c")]
    allowed = {"mode": "required", "tools": [{"type": "function", "function": {"name": "c"}}]}
    req = CODEC.decode_request(
        chat_body(tools=tools, tool_choice={"type": "allowed_tools", "allowed_tools": allowed})
    )
    assert [t.name for t in req.tools] == ["c"]
    assert req.tool_choice == ToolChoice("required")


def test_decode_tool_without_parameters_gets_an_empty_schema() -> None:
    req = CODEC.decode_request(chat_body(tools=[{"type": "function", "function": {"name": "now"}}]))
    assert req.tools == [Tool(name="now")]


def test_decode_max_completion_tokens_wins_over_max_tokens() -> None:
    assert CODEC.decode_request(chat_body(max_tokens=10, max_completion_tokens=20)).max_output_tokens == 20
    assert CODEC.decode_request(chat_body(max_tokens=10)).max_output_tokens == 10


@pytest.mark.parametrize(("wire", "stop"), [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, [])])
def test_decode_stop_string_or_list(wire: Any, stop: list[str]) -> None:
    assert CODEC.decode_request(chat_body(stop=wire)).stop == stop


@pytest.mark.parametrize(
    ("wire", "fmt"),
    [
        ({"type": "text"}, OutputFormat("text")),
        ({"type": "json_object"}, OutputFormat("json_object")),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            OutputFormat("json_schema", name="x", schema={"type": "object"}),
        ),
    ],
)
def test_decode_response_format(wire: dict[str, Any], fmt: OutputFormat) -> None:
    assert CODEC.decode_request(chat_body(response_format=wire)).output_format == fmt


@pytest.mark.parametrize(
    ("effort", "reasoning"),
    [
        ("minimal", Reasoning(effort="minimal")),
        ("high", Reasoning(effort="high")),
        ("none", None),
        ("xhigh", Reasoning(effort="high", budget_tokens=32768)),
        ("max", Reasoning(effort="high", budget_tokens=65536)),
    ],
)
def test_decode_reasoning_effort(effort: str, reasoning: Reasoning | None) -> None:
    assert CODEC.decode_request(chat_body(reasoning_effort=effort)).reasoning == reasoning


def test_decode_safety_identifier_wins_over_user() -> None:
    assert CODEC.decode_request(chat_body(user="u1")).user == "u1"
    assert CODEC.decode_request(chat_body(user="u1", safety_identifier="s1")).user == "s1"


def test_decode_keeps_meaningful_extras_and_skips_defaults_and_harmless_ones() -> None:
    body = chat_body(
        n=2,
        logprobs=True,
        top_logprobs=3,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0,
        logit_bias={"50256": -100},
        service_tier="flex",
        prediction={"type": "content", "content": "x"},
        modalities=["text"],
        web_search_options={},
        store=True,
        metadata={"a": "b"},
        prompt_cache_key="k",
        stream_options={"include_usage": True},
        min_p=0.05,
    )
    assert CODEC.decode_request(body).extras == {
        "n": 2,
        "logprobs": True,
        "top_logprobs": 3,
        "seed": 7,
        "presence_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "service_tier": "flex",
        "prediction": {"type": "content", "content": "x"},
        "web_search_options": {},
        "min_p": 0.05,
    }


def test_decode_assistant_refusal_and_empty_content_next_to_tool_calls() -> None:
    body = chat_body(
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            {"role": "user", "content": "y"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
        ]
    )
    messages = CODEC.decode_request(body).messages
    assert messages[1].parts == [TextPart("I can't help with that.")]
    assert messages[3].parts == [ToolCallPart("c1", "f", "{}")]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        (chat_body(messages=[{"role": "critic", "content": "x"}]), "messages[0].role"),
        (chat_body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
        (chat_body(temperature="hot"), "temperature"),
        (chat_body(max_tokens=True), "max_tokens"),
        (chat_body(stop=[1]), "stop"),
        (chat_body(reasoning_effort="extreme"), "reasoning_effort"),
        (
            chat_body(response_format={"type": "json_schema", "json_schema": {}}),
            "response_format.json_schema.name",
        ),
        (chat_body(functions=[{"name": "f"}]), "functions"),
        (chat_body(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (
            chat_body(
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]}
                ]
            ),
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_decode_refuses_invalid_input_naming_the_parameter(body: dict[str, Any], param: str) -> None:
    assert refusal(CODEC.decode_request, body).param == param


# --- provider side: encode_request -----------------------------------------------------------


def test_encode_golden_agent_request_for_an_openai_compatible_server() -> None:
    req = CODEC.decode_request(golden_json("client_request_agent.json"))
    assert CODEC.encode_request(req, TARGET) == golden_json("provider_request_agent.json")


def test_openai_codec_sends_max_completion_tokens() -> None:
    body = OPENAI_CODEC.encode_request(request(max_output_tokens=50), Target("openai", "o4-mini"))
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


def test_encode_minimal_request_has_only_model_and_messages() -> None:
    assert CODEC.encode_request(request(), TARGET) == {
        "model": "Qwen/Qwen3-8B",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_encode_stream_always_asks_for_usage() -> None:
    body = CODEC.encode_request(request(stream=True), TARGET)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_encode_tool_results_become_tool_messages_before_the_rest_of_the_turn() -> None:
    req = request()
    req.messages = [
        Message("user", [TextPart("weather?")]),
        Message(
            "assistant",
            [
                ThinkingPart("need tools", signature="sig"),
                TextPart("Checking."),
                ToolCallPart("toolu_01", "get_weather", '{"city":"Lyon"}'),
                ToolCallPart("toolu_02", "get_weather", '{"city":"Paris"}'),
            ],
        ),
        Message(
            "user",
            [
                ToolResultPart("toolu_01", [TextPart("21C")]),
                ToolResultPart("toolu_02", [TextPart("18C"), TextPart("rain")], is_error=True),
                TextPart("Now compare."),
            ],
        ),
    ]
    assert CODEC.encode_request(req, TARGET)["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "21C"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "18C\nrain"},
        {"role": "user", "content": "Now compare."},
    ]


def test_encode_drops_thinking_from_assistant_history() -> None:
    req = request()
    req.messages.append(Message("assistant", [ThinkingPart("hmm", signature="s"), TextPart("Hello")]))
    assert CODEC.encode_request(req, TARGET)["messages"][-1] == {"role": "assistant", "content": "Hello"}


def test_encode_images_as_url_and_as_data_url() -> None:
    req = request()
    req.messages = [
        Message(
            "user",
            [
                TextPart("compare"),
                ImagePart(url="https://example.com/a.jpg", detail="low"),
                ImagePart(data=PNG_B64, media_type="image/png"),
            ],
        )
    ]
    assert CODEC.encode_request(req, TARGET)["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("tool", "get_weather"), {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_encode_tool_choice(choice: ToolChoice, wire: Any) -> None:
    body = CODEC.encode_request(request(tools=[Tool("get_weather")], tool_choice=choice), TARGET)
    assert body["tool_choice"] == wire
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather"}}]


@pytest.mark.parametrize(
    ("fmt", "wire"),
    [
        (OutputFormat("json_object"), {"type": "json_object"}),
        (
            OutputFormat("json_schema", schema={"type": "object"}, strict=True),
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": True},
            },
        ),
    ],
)
def test_encode_structured_output(fmt: OutputFormat, wire: dict[str, Any]) -> None:
    assert CODEC.encode_request(request(output_format=fmt), TARGET)["response_format"] == wire


@pytest.mark.parametrize(
    ("reasoning", "effort"),
    [
        (Reasoning(effort="medium"), "medium"),
        (Reasoning(budget_tokens=1024), "minimal"),
        (Reasoning(budget_tokens=5000), "medium"),
        (Reasoning(budget_tokens=100_000), "high"),
    ],
)
def test_encode_reasoning_budget_becomes_effort(reasoning: Reasoning, effort: str) -> None:
    assert CODEC.encode_request(request(reasoning=reasoning), TARGET)["reasoning_effort"] == effort


def test_encode_passes_top_k_and_provider_side_extras_through() -> None:
    extras = {"seed": 3, "frequency_penalty": 0.4, "logit_bias": {"1": 5}, "service_tier": "flex", "n": 1}
    body = CODEC.encode_request(request(top_k=40, extras=extras), TARGET)
    assert body["top_k"] == 40
    assert {k: body[k] for k in extras} == extras


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 3),
        ("logprobs", True),
        ("top_logprobs", 5),
        ("audio", {"voice": "alloy"}),
        ("thinking", {"x": 1}),
    ],
)
def test_encode_refuses_extras_it_cannot_honour_naming_param_and_provider(param: str, value: Any) -> None:
    error = refusal(CODEC.encode_request, request(extras={param: value}), TARGET)
    assert error.param == param
    assert error.message == f"'{param}' is not supported by provider 'local-vllm' (chat)"


def test_encode_refuses_images_in_tool_results() -> None:
    req = request()
    req.messages = [Message("user", [ToolResultPart("c1", [ImagePart(url="https://example.com/x.png")])])]
    error = refusal(CODEC.encode_request, req, TARGET)
    assert "local-vllm" in error.message and "images in tool results" in error.message


def test_chat_request_survives_decode_then_encode() -> None:
    body = chat_body(
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "q2"},
        ],
        temperature=0.5,
        stop=["x"],
        tool_choice="none",
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        seed=1,
    )
    encoded = CODEC.encode_request(CODEC.decode_request(body), Target("p", "m"))
    assert encoded == body


# --- provider side: decode_response ----------------------------------------------------------


def test_decode_completion_with_cached_and_reasoning_tokens() -> None:
    response = CODEC.decode_response(golden_json("provider_completion_text_cached_reasoning.json"))
    assert response.parts == [TextPart("The capital of France is Paris.")]
    assert response.finish_reason == "stop"
    assert response.usage == Usage(
        input_tokens=2006, cached_input_tokens=1920, output_tokens=300, reasoning_tokens=256
    )
    assert (response.id, response.model) == ("chatcmpl-CJ4qgQ2cZ7h1a7vG9bT3xYk0PmW8e", "o4-mini-2025-04-16")


def test_decode_completion_with_parallel_tool_calls() -> None:
    response = CODEC.decode_response(golden_json("provider_completion_parallel_tool_calls.json"))
    assert response.parts == [
        ToolCallPart("call_9Kd2mX4bQe1Rz8vLp0sTn3Yw", "get_weather", '{"city":"Lyon","unit":"celsius"}'),
        ToolCallPart("call_Hq7ZtV2wLr5Nc1Xb6Ms0Kd8P", "get_weather", '{"city":"Paris","unit":"celsius"}'),
    ]
    assert response.finish_reason == "tool_calls"


def test_decode_vllm_reasoning_content_as_a_thinking_part_first() -> None:
    response = CODEC.decode_response(golden_json("provider_completion_vllm_reasoning.json"))
    assert response.parts == [
        ThinkingPart("9.11 vs 9.8: compare tenths, 1 < 8, so 9.8 is larger."),
        TextPart("9.8 is greater than 9.11."),
    ]
    assert response.usage == Usage(input_tokens=18, output_tokens=42)


@pytest.mark.parametrize(
    ("wire", "made_calls", "reason"),
    [
        ("stop", False, "stop"),
        ("length", False, "length"),
        ("tool_calls", True, "tool_calls"),
        ("function_call", True, "tool_calls"),
        ("content_filter", False, "content_filter"),
        ("stop", True, "tool_calls"),  # servers that say "stop" after calling tools
        ("eos", False, "stop"),
        (None, False, "stop"),
    ],
)
def test_decode_finish_reasons(wire: str | None, made_calls: bool, reason: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if made_calls:
        message["tool_calls"] = [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    body = {"choices": [{"index": 0, "message": message, "finish_reason": wire}]}
    assert CODEC.decode_response(body).finish_reason == reason


def test_decode_refusal_is_the_answer_text() -> None:
    body = {
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "refusal": "I can't."},
                "finish_reason": "stop",
            }
        ]
    }
    assert CODEC.decode_response(body).parts == [TextPart("I can't.")]


def test_decode_usage_cache_writes_and_deepseek_cache_hits() -> None:
    body = golden_json("provider_completion_vllm_reasoning.json")
    body["usage"] = {
        "prompt_tokens": 100,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cache_write_tokens": 60},
        "prompt_cache_hit_tokens": 30,
    }
    assert CODEC.decode_response(body).usage == Usage(
        input_tokens=100, cached_input_tokens=30, output_tokens=5, cache_write_tokens=60
    )


def test_decode_error_body_is_a_provider_error() -> None:
    with pytest.raises(GatewayError) as info:
        CODEC.decode_response({"error": {"message": "model overloaded", "type": "server_error"}})
    assert (info.value.reason, info.value.message) == ("provider_error", "model overloaded")


# --- provider side: stream_decoder -----------------------------------------------------------


def test_stream_decoder_openai_parallel_tool_calls_split_across_chunks() -> None:
    events, decoder = decode_stream("provider_stream_openai_parallel_tools.sse")
    usage = Usage(input_tokens=1290, cached_input_tokens=1152, output_tokens=52)
    assert events == [
        ToolCallStart(0, "call_9Kd2mX4bQe1Rz8vLp0sTn3Yw", "get_weather"),
        ToolCallDelta(0, '{"ci'),
        ToolCallDelta(0, 'ty": "Ly'),
        ToolCallDelta(0, 'on", "unit": "celsius"}'),
        ToolCallStart(1, "call_Hq7ZtV2wLr5Nc1Xb6Ms0Kd8P", "get_weather"),
        ToolCallDelta(1, '{"city": "Pa'),
        ToolCallDelta(1, 'ris", "unit": "celsius"}'),
        Finish("tool_calls"),
        UsageUpdate(usage),
    ]
    assert decoder.usage == usage
    assert decoder.finish_reason == "tool_calls"
    assert decoder.output_chars == len('{"city": "Lyon", "unit": "celsius"}') + len(
        '{"city": "Paris", "unit": "celsius"}'
    )


def test_stream_decoder_deepseek_reasoning_then_text_with_usage_on_the_finish_chunk() -> None:
    events, decoder = decode_stream("provider_stream_deepseek_reasoning.sse")
    usage = Usage(input_tokens=17, output_tokens=61, reasoning_tokens=48)
    assert events == [
        ThinkingDelta("Compare"),
        ThinkingDelta(" tenths: 1 < 8."),
        TextDelta("9.8"),
        TextDelta(" is greater."),
        Finish("stop"),
        UsageUpdate(usage),
    ]
    assert decoder.output_chars == len("Compare tenths: 1 < 8.9.8 is greater.")


def test_stream_decoder_takes_one_reasoning_field_when_vllm_sends_both() -> None:
    events, decoder = decode_stream("provider_stream_vllm_reasoning_both_fields.sse")
    assert events == [
        ThinkingDelta("The user"),
        ThinkingDelta(" greets me."),
        TextDelta("Hello!"),
        Finish("length"),
        UsageUpdate(Usage(input_tokens=12, output_tokens=20)),
    ]
    assert decoder.finish_reason == "length"


def test_stream_decoder_ollama_parallel_calls_on_one_index_and_stop_means_tool_calls() -> None:
    events, decoder = decode_stream("provider_stream_ollama_parallel_same_index.sse")
    assert events == [
        ToolCallStart(0, "call_k2lq9x1v", "get_weather"),
        ToolCallDelta(0, '{"city":"Lyon"}'),
        ToolCallStart(1, "call_p7c3m0zd", "get_time"),
        ToolCallDelta(1, '{"tz":"Europe/Paris"}'),
        Finish("tool_calls"),
        UsageUpdate(Usage(input_tokens=180, output_tokens=41)),
    ]
    assert decoder.finish_reason == "tool_calls"


def test_stream_decoder_reads_groq_usage_from_x_groq() -> None:
    events, decoder = decode_stream("provider_stream_groq_x_groq_usage.sse")
    assert events == [TextDelta("Hi"), Finish("stop"), UsageUpdate(Usage(input_tokens=40, output_tokens=2))]
    assert decoder.usage == Usage(input_tokens=40, output_tokens=2)


def test_stream_decoder_raises_provider_error_on_an_error_chunk() -> None:
    decoder = CODEC.stream_decoder()
    sse = golden_events("provider_stream_error_midway.sse")
    assert decoder.feed(sse[0]) == []
    assert decoder.feed(sse[1]) == [TextDelta("Once upon")]
    with pytest.raises(GatewayError) as info:
        decoder.feed(sse[2])
    assert info.value.reason == "provider_error"
    assert info.value.message == "The server had an error while processing your request. Sorry about that!"


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> Any:
    from aistats_gateway.formats.sse import ServerSentEvent

    payload = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    payload["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return ServerSentEvent(None, json.dumps(payload))


def test_stream_decoder_holds_argument_fragments_that_come_before_the_name() -> None:
    decoder = CODEC.stream_decoder()
    assert (
        decoder.feed(
            _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": '{"a"'}}]})
        )
        == []
    )
    assert decoder.feed(
        _chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ":1}"}}]})
    ) == [
        ToolCallStart(0, "call_1", "f"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ":1}"),
    ]


def test_stream_decoder_refuses_a_tool_call_that_never_gets_a_name() -> None:
    decoder = CODEC.stream_decoder()
    decoder.feed(_chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": "{}"}}]}))
    with pytest.raises(GatewayError) as info:
        decoder.feed(_chunk({}, "tool_calls"))
    assert info.value.reason == "provider_error"


def test_stream_decoder_numbers_calls_from_zero_whatever_the_provider_index() -> None:
    decoder = CODEC.stream_decoder()
    events = decoder.feed(
        _chunk(
            {
                "tool_calls": [
                    {"index": 3, "id": "c3", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]
            }
        )
    )
    assert events == [ToolCallStart(0, "c3", "f"), ToolCallDelta(0, "{}")]


def test_stream_decoder_gives_nothing_for_role_chunks_and_done() -> None:
    from aistats_gateway.formats.sse import ServerSentEvent

    decoder = CODEC.stream_decoder()
    assert decoder.feed(_chunk({"role": "assistant", "content": ""})) == []
    assert decoder.feed(ServerSentEvent(None, "[DONE]")) == []
    assert decoder.usage is None and decoder.finish_reason is None and decoder.output_chars == 0


# --- client side: encode_response ------------------------------------------------------------


def test_encode_response_text_with_usage_and_cost_parses_in_the_sdk() -> None:
    usage = Usage(input_tokens=2006, cached_input_tokens=1920, output_tokens=300, reasoning_tokens=256)
    body = CODEC.encode_response(Response([TextPart("Paris.")], "stop", usage), ctx(), 0.00123)
    assert body == {
        "id": GEN_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": "acme/model-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 256},
            "cost": 0.00123,
        },
        "system_fingerprint": None,
    }
    completion = sdk_client(orjson.dumps(body), stream=False).chat.completions.create(
        model="acme/model-x", messages=[{"role": "user", "content": "capital?"}]
    )
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "Paris."
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 1920
    assert completion.usage.model_extra == {"cost": 0.00123}


def test_encode_response_tool_calls_have_null_content_and_reasoning_in_reasoning_content() -> None:
    response = Response(
        [
            ThinkingPart("Two cities.", signature="EqQBCkYIBxgCKkA"),
            ToolCallPart("toolu_01A", "get_weather", '{"city":"Lyon"}'),
            ToolCallPart("toolu_01B", "get_weather", '{"city":"Paris"}'),
        ],
        "tool_calls",
        Usage(input_tokens=10, output_tokens=20),
    )
    body = CODEC.encode_response(response, ctx(), 0.0)
    assert len(body["choices"]) == 1  # reasoning is never an extra choice
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["reasoning_content"] == "Two cities."
    assert [c["id"] for c in message["tool_calls"]] == ["toolu_01A", "toolu_01B"]
    assert message["tool_calls"][1]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.tool_calls is not None


def test_encode_response_cache_writes_in_prompt_details() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=20, cache_write_tokens=50, output_tokens=5)
    body = CODEC.encode_response(Response([TextPart("x")], "stop", usage), ctx(), 0.5)
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 20, "cache_write_tokens": 50}
    ChatCompletion.model_validate(body)


@pytest.mark.parametrize(
    ("reason", "wire"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("stop_sequence", "stop"),
        ("error", "stop"),
    ],
)
def test_encode_finish_reasons(reason: Any, wire: str) -> None:
    body = CODEC.encode_response(Response([TextPart("x")], reason), ctx(), 0.0)
    assert body["choices"][0]["finish_reason"] == wire
    ChatCompletion.model_validate(body)


# --- client side: stream_encoder -------------------------------------------------------------


def encode_events(events: list[StreamEvent], usage: Usage, *, wants_usage: bool = True) -> list[bytes]:
    encoder = CODEC.stream_encoder(ctx(wants_usage))
    frames = encoder.start()
    for event in events:
        frames.extend(encoder.feed(event))
    return frames + encoder.finish(usage, 0.0042)


def test_stream_encoder_frames_exactly_as_openai() -> None:
    frames = encode_events(
        [ThinkingDelta("hm"), ThinkingSignature("sig"), TextDelta("Hel"), TextDelta("lo"), Finish("stop")],
        Usage(input_tokens=5, output_tokens=3, reasoning_tokens=1),
    )
    payloads = frames_payloads(frames)
    base = {
        "id": GEN_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "acme/model-x",
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], "usage": None}

    assert payloads == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "hm"}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        {
            **base,
            "choices": [],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 3,
                "total_tokens": 8,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 1},
                "cost": 0.0042,
            },
        },
        "[DONE]",
    ]
    for payload in payloads[:-1]:
        ChatCompletionChunk.model_validate(payload)


def test_stream_encoder_without_include_usage_sends_no_usage_at_all() -> None:
    payloads = frames_payloads(
        encode_events([TextDelta("x"), Finish("length")], Usage(1, 0, 1), wants_usage=False)
    )
    assert [p["choices"][0]["finish_reason"] for p in payloads[:-1]] == [None, None, "length"]
    assert all("usage" not in p for p in payloads[:-1])
    assert payloads[-1] == "[DONE]"


def test_stream_encoder_sends_the_role_chunk_once_even_without_start() -> None:
    encoder = CODEC.stream_encoder(ctx())
    first = frames_payloads(encoder.feed(TextDelta("a")))
    assert [p["choices"][0]["delta"] for p in first] == [
        {"role": "assistant", "content": ""},
        {"content": "a"},
    ]
    assert encoder.start() == []


def test_stream_encoder_ends_with_a_finish_chunk_when_none_came() -> None:
    payloads = frames_payloads(
        encode_events([ToolCallStart(0, "c1", "f"), ToolCallDelta(0, "{}")], Usage(), wants_usage=False)
    )
    assert payloads[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_stream_encoder_output_accumulates_in_the_sdk_with_tool_call_arguments_intact() -> None:
    # A provider stream (OpenAI's own framing) decoded, then re-encoded for a chat client.
    events, decoder = decode_stream("provider_stream_openai_parallel_tools.sse")
    frames = encode_events(events, decoder.usage)
    client = sdk_client(b"".join(frames), stream=True)
    with client.chat.completions.stream(
        model="acme/model-x", messages=[{"role": "user", "content": "w"}]
    ) as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_9Kd2mX4bQe1Rz8vLp0sTn3Yw", "get_weather", '{"city": "Lyon", "unit": "celsius"}'),
        ("call_Hq7ZtV2wLr5Nc1Xb6Ms0Kd8P", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
    ]
    assert completion.id == GEN_ID
    assert completion.usage is not None and completion.usage.prompt_tokens == 1290
    assert completion.usage.model_extra == {"cost": 0.0042}


def test_stream_encoder_reasoning_reaches_the_sdk_as_reasoning_content() -> None:
    events, decoder = decode_stream("provider_stream_deepseek_reasoning.sse")
    chunks = list(
        sdk_client(b"".join(encode_events(events, decoder.usage)), stream=True).chat.completions.create(
            model="acme/model-x", messages=[{"role": "user", "content": "q"}], stream=True
        )
    )
    assert all(len(c.choices) <= 1 for c in chunks)
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks if c.choices
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (reasoning, text) == ("Compare tenths: 1 < 8.", "9.8 is greater.")


def test_stream_encoder_fail_raises_an_api_error_in_the_sdk() -> None:
    encoder = CODEC.stream_encoder(ctx())
    frames = (
        encoder.start() + encoder.feed(TextDelta("partial")) + encoder.fail("provider_error", "upstream died")
    )
    assert frames_payloads(frames)[-1] == {
        "error": {
            "message": "upstream died",
            "type": "provider_error",
            "code": "provider_error",
            "param": None,
        }
    }
    stream = sdk_client(b"".join(frames), stream=True).chat.completions.create(
        model="acme/model-x", messages=[{"role": "user", "content": "q"}], stream=True
    )
    with pytest.raises(openai.APIError, match="upstream died"):
        list(stream)


def test_stream_decoder_separates_id_less_calls_and_gives_them_ids() -> None:
    decoder = CODEC.stream_decoder()
    events = decoder.feed(_chunk({"tool_calls": [{"function": {"name": "a", "arguments": "{}"}}]}))
    events += decoder.feed(_chunk({"tool_calls": [{"function": {"name": "b", "arguments": '{"x":'}}]}))
    events += decoder.feed(_chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "a"), (1, "b")]
    assert all(re.fullmatch(r"call_[0-9a-f]{16}", s.id) for s in starts)
    assert starts[0].id != starts[1].id
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, "{}"),
        ToolCallDelta(1, '{"x":'),
        ToolCallDelta(1, "1}"),
    ]


def test_decode_tool_results_separated_by_a_user_message_stay_separate_turns() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = chat_body(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "user", "content": "and?"},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
        ]
    )
    messages = CODEC.decode_request(body).messages
    assert [len(m.parts) for m in messages] == [1, 1, 1, 1, 1]
    assert messages[4].parts == [ToolResultPart("c2", [TextPart("two")])]


@pytest.mark.parametrize(
    ("url", "media_type"),
    [
        (f"data:image/png;base64,{PNG_B64}", "image/png"),
        (f"data:image/JPEG;name=a.jpg;base64,{PNG_B64}", "image/jpeg"),
    ],
)
def test_decode_data_urls_become_inline_base64_images(url: str, media_type: str) -> None:
    body = chat_body(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    )
    assert CODEC.decode_request(body).messages[0].parts == [ImagePart(data=PNG_B64, media_type=media_type)]


def test_stream_decoder_raises_on_a_named_error_event() -> None:
    from aistats_gateway.formats.sse import ServerSentEvent

    with pytest.raises(GatewayError) as info:
        CODEC.stream_decoder().feed(
            ServerSentEvent("error", '{"message": "CUDA out of memory", "code": 500}')
        )
    assert (info.value.reason, info.value.message) == ("provider_error", "CUDA out of memory")


def test_encode_omits_tool_settings_that_ask_for_nothing_without_tools() -> None:
    body = CODEC.encode_request(request(tool_choice=ToolChoice("auto"), parallel_tool_calls=True), TARGET)
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    body = CODEC.encode_request(request(tool_choice=ToolChoice("required")), TARGET)
    assert body["tool_choice"] == "required"
    body = CODEC.encode_request(request(tools=[Tool("f")], parallel_tool_calls=False), TARGET)
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("reported", "counted"),
    [(12, 12), (0, 0), (-3, 0), (True, 0), (None, 0), ("7", 7), (7.9, 7), ("many", 0), ([1], 0)],
)
def test_usage_counts_that_are_not_plain_positive_integers_are_read_safely(
    reported: Any, counted: int
) -> None:
    usage = Usage.from_openai_chat({"prompt_tokens": reported, "completion_tokens": 1})
    assert usage is not None and usage.input_tokens == counted and usage.output_tokens == 1


def test_usage_at_most_bounds_every_count_and_keeps_usage_within_the_bound_as_is() -> None:
    usage = Usage(input_tokens=10, output_tokens=4, reasoning_tokens=2)
    assert usage.at_most(10) is usage
    huge = Usage(input_tokens=10**12, cached_input_tokens=10**11, output_tokens=4, output_image_tokens=10**10)
    assert huge.at_most(1_000) == Usage(
        input_tokens=1_000, cached_input_tokens=1_000, output_tokens=4, output_image_tokens=1_000
    )
