"""The OpenAI Responses codec, both sides, and the official OpenAI SDK reading what it produces.

Client side: Responses request bodies → canonical requests; canonical answers and stream events →
Response objects and Responses SSE events (checked against the SDK's typed models and with the
SDK itself against a small Starlette server). Provider side: canonical requests → Responses
bodies for OpenAI/xAI; their Response objects and SSE streams → canonical answers and events.
Provider payloads under ``tests/golden/openai_responses/`` are in OpenAI's exact wire shapes
(obfuscation fields, ``billing``, ``cache_write_tokens``…), each validated by the SDK's models.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import uvicorn
from openai.types.responses import FunctionToolParam, Response, ResponseInputItemParam, ResponseStreamEvent
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.canonical import (
    EFFORT_BUDGET_TOKENS,
    Finish,
    ImagePart,
    Message,
    OutputFormat,
    Reasoning,
    Request,
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
from aistats_gateway.canonical import Response as Answer
from aistats_gateway.formats.base import Codec, ResponseContext, Target
from aistats_gateway.formats.openai_responses import CODEC, ResponsesCodec
from aistats_gateway.formats.sse import ServerSentEvent, SSEDecoder
from aistats_gateway.ids import derive, new_generation_id, to_generation_id
from tests.fakes.openai_server import Behaviour, FakeOpenAI, FakeOpenAIServer

GOLDEN = Path(__file__).parent / "golden" / "openai_responses"
GENERATION_ID = "gen_01JZ8Q4T5W6X7Y8Z9A0B1C2D3E"
RESPONSE_ID = "resp_01JZ8Q4T5W6X7Y8Z9A0B1C2D3E"
SUFFIX = RESPONSE_ID[len("resp_") :]
CREATED = 1767225600
COMPLETED = 1767225603
TARGET = Target(provider="openai", model="gpt-5-mini-2025-08-07")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

# The SDK's own event classes, by their `type` literal: what a strict client validates against.
EVENT_CLASSES: dict[str, Any] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
INPUT_ITEM = TypeAdapter(ResponseInputItemParam)
FUNCTION_TOOL = TypeAdapter(FunctionToolParam)

codec = ResponsesCodec(clock=lambda: float(COMPLETED))


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def golden_events(name: str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return decoder.feed((GOLDEN / name).read_bytes()) + decoder.flush()


def context(request: dict | None = None, model: str = "qwen/qwen3-8b") -> ResponseContext:
    return ResponseContext(generation_id=GENERATION_ID, model=model, created=CREATED, request=request or {})


def refusal(body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(body)
    assert caught.value.status == 400
    assert caught.value.reason == "validation_error"
    return caught.value


def test_codec_satisfies_the_protocol_under_its_format_name() -> None:
    checked: Codec = CODEC
    assert checked.name == "responses"


# ============================================================================================
# Client side: requests
# ============================================================================================


def test_string_input_becomes_one_user_message() -> None:
    request = CODEC.decode_request({"model": "qwen/qwen3-8b", "input": "Hello"})
    assert request == Request(model="qwen/qwen3-8b", messages=[Message("user", [TextPart("Hello")])])


def test_instructions_and_every_system_or_developer_message_are_hoisted_in_order() -> None:
    request = CODEC.decode_request(
        {
            "model": "m",
            "instructions": "You are terse.",
            "input": [
                {"role": "developer", "content": "Answer in French."},
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "No emoji."}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Hi"},
                        {"type": "input_text", "text": "there"},
                    ],
                },
                {
                    "type": "message",
                    "id": "msg_abc",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}],
                },
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Encore"},
            ],
        }
    )
    assert request.system == [
        TextPart("You are terse."),
        TextPart("Answer in French."),
        TextPart("No emoji."),
        TextPart("Be brief."),
    ]
    assert request.messages == [
        Message("user", [TextPart("Hi"), TextPart("there")]),
        Message("assistant", [TextPart("Bonjour")]),
        Message("user", [TextPart("Encore")]),
    ]


def test_image_urls_are_kept_and_data_urls_become_inline_base64() -> None:
    request = CODEC.decode_request(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is in these?"},
                        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                }
            ],
        }
    )
    assert request.messages[0].parts == [
        TextPart("What is in these?"),
        ImagePart(url="https://example.com/cat.png", detail="low"),
        ImagePart(data=PNG, media_type="image/png"),
    ]


def test_agent_conversation_decodes_to_canonical_turns() -> None:
    request = CODEC.decode_request(golden("client_request_agent.json"))
    assert request.model == "anthropic/claude-sonnet-4.5"
    assert [part.text for part in request.system] == [
        "You are a travel assistant.",
        "Answer in English.",
        "Keep answers under 50 words.",
    ]
    paris, lyon = "call_9Kd2mX4bQe1Rz8vLp0sTn3Yw", "call_Hq7ZtV2wLr5Nc1Xb6Ms0Kd8P"
    assert request.messages == [
        Message(
            "user",
            [
                TextPart("What is the weather where this photo was taken, and in Paris?"),
                ImagePart(
                    url="https://upload.wikimedia.org/wikipedia/commons/a/a8/Tour_Eiffel.jpg", detail="high"
                ),
                ImagePart(data=PNG, media_type="image/png", detail="auto"),
            ],
        ),
        # the reasoning item is dropped; the calls join the assistant turn before them
        Message(
            "assistant",
            [
                TextPart("Let me check both."),
                ToolCallPart(paris, "get_weather", '{"city":"Paris","unit":"celsius"}'),
                ToolCallPart(lyon, "get_weather", '{"city":"Lyon","unit":"celsius"}'),
            ],
        ),
        Message(
            "user",
            [
                ToolResultPart(paris, [TextPart('{"temp":18,"sky":"rain"}')]),
                ToolResultPart(lyon, [TextPart('{"temp":21,"sky":"clear"}')]),
            ],
        ),
        Message("user", [TextPart("Summarise both in one JSON object.")]),
    ]
    schema = golden("client_request_agent.json")["tools"][0]["parameters"]
    assert request.tools == [Tool("get_weather", "Current weather for a city", schema, strict=True)]
    assert (request.tool_choice, request.parallel_tool_calls) == (ToolChoice("auto"), True)
    assert request.output_format is not None and request.output_format.name == "weather_summary"
    assert request.output_format.strict is True
    assert request.reasoning == Reasoning(effort="high", include_thoughts=True)
    assert (request.max_output_tokens, request.temperature, request.stream, request.user) == (
        2048,
        0.2,
        True,
        "user-1234",
    )
    assert request.extras == {"verbosity": "low"}  # store, include, metadata: harmless


def test_function_call_after_tool_results_starts_a_new_assistant_turn() -> None:
    request = CODEC.decode_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
                {"type": "function_call", "call_id": "call_b", "name": "get_time", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "call_b",
                    "output": [
                        {"type": "input_text", "text": "12:00"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                },
            ],
        }
    )
    assert [(m.role, [p.type for p in m.parts]) for m in request.messages] == [
        ("user", ["text"]),
        ("assistant", ["tool_call"]),
        ("user", ["tool_result"]),
        ("assistant", ["tool_call"]),
        ("user", ["tool_result"]),
    ]
    last = request.messages[-1].parts[0]
    assert isinstance(last, ToolResultPart)
    assert last.content == [TextPart("12:00"), ImagePart(data=PNG, media_type="image/png")]


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME_TOOL: dict[str, Any] = {"type": "function", "name": "get_time", "parameters": None, "strict": None}


def test_function_tools_keep_their_schema_intact() -> None:
    request = CODEC.decode_request(
        {"model": "m", "input": "hi", "tools": [WEATHER_TOOL, TIME_TOOL], "parallel_tool_calls": False}
    )
    assert request.tools == [
        Tool("get_weather", "Current weather for a city", WEATHER_TOOL["parameters"], strict=True),
        Tool("get_time"),
    ]
    assert request.parallel_tool_calls is False
    assert request.tool_choice is None


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", ToolChoice("auto")),
        ("none", ToolChoice("none")),
        ("required", ToolChoice("required")),
        ({"type": "function", "name": "get_time"}, ToolChoice("tool", name="get_time")),
    ],
)
def test_tool_choice_maps_to_its_canonical_mode(tool_choice: Any, expected: ToolChoice) -> None:
    request = CODEC.decode_request(
        {"model": "m", "input": "hi", "tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": tool_choice}
    )
    assert request.tool_choice == expected


def test_allowed_tools_choice_keeps_only_the_allowed_tools() -> None:
    request = CODEC.decode_request(
        {
            "model": "m",
            "input": "hi",
            "tools": [WEATHER_TOOL, TIME_TOOL],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_time"}],
            },
        }
    )
    assert [tool.name for tool in request.tools] == ["get_time"]
    assert request.tool_choice == ToolChoice("required")


def test_tool_choice_without_tools_is_dropped_unless_it_demands_a_call() -> None:
    request = CODEC.decode_request(
        {"model": "m", "input": "hi", "tools": [], "tool_choice": "auto", "parallel_tool_calls": True}
    )
    assert (request.tools, request.tool_choice, request.parallel_tool_calls) == ([], None, None)
    assert refusal({"model": "m", "input": "hi", "tool_choice": "required"}).param == "tool_choice"


def test_text_format_becomes_the_output_format() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    request = CODEC.decode_request(
        {
            "model": "m",
            "input": "2+2?",
            "text": {"format": {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}},
        }
    )
    assert request.output_format == OutputFormat("json_schema", name="sum", schema=schema, strict=True)
    request = CODEC.decode_request(
        {"model": "m", "input": "2+2?", "text": {"format": {"type": "json_object"}, "verbosity": "medium"}}
    )
    assert request.output_format == OutputFormat("json_object")
    assert request.extras == {}  # medium is the default verbosity
    plain = CODEC.decode_request({"model": "m", "input": "x", "text": {"format": {"type": "text"}}})
    assert plain.output_format is None


def test_sampling_and_streaming_settings_carry_over_and_harmless_ones_are_skipped() -> None:
    request = CODEC.decode_request(
        {
            "model": "m",
            "input": "hi",
            "max_output_tokens": 512,
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "user-42",
            "stream": True,
            "stream_options": {"include_obfuscation": False},
            "metadata": {"trace": "abc"},
            "store": True,
            "service_tier": "auto",
            "truncation": "disabled",
            "include": ["reasoning.encrypted_content", "message.input_image.image_url"],
            "prompt_cache_key": "k",
            "safety_identifier": "s",
            "max_tool_calls": 3,
            "top_logprobs": 0,
        }
    )
    assert request == Request(
        model="m",
        messages=[Message("user", [TextPart("hi")])],
        max_output_tokens=512,
        temperature=0.2,
        top_p=0.9,
        user="user-42",
        stream=True,
    )


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        ({"effort": "minimal"}, Reasoning(effort="minimal", include_thoughts=False)),
        ({"effort": "low", "summary": "auto"}, Reasoning(effort="low", include_thoughts=True)),
        ({"effort": "medium", "summary": "detailed"}, Reasoning(effort="medium", include_thoughts=True)),
        ({"effort": "high", "generate_summary": "concise"}, Reasoning(effort="high", include_thoughts=True)),
        ({"effort": "xhigh"}, Reasoning(effort="high", include_thoughts=False)),
        ({"effort": "max", "summary": "auto"}, Reasoning(effort="high", include_thoughts=True)),
        ({"summary": "auto"}, Reasoning(include_thoughts=True)),
        ({"effort": "none", "summary": "auto"}, None),
        ({"effort": None, "summary": None}, None),
    ],
)
def test_reasoning_effort_and_summary_map_to_canonical_reasoning(
    reasoning: dict, expected: Reasoning | None
) -> None:
    assert CODEC.decode_request({"model": "m", "input": "hi", "reasoning": reasoning}).reasoning == expected


def test_features_only_some_providers_honour_travel_as_extras() -> None:
    request = CODEC.decode_request(
        {
            "model": "m",
            "input": "hi",
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 5,
            "service_tier": "flex",
            "text": {"verbosity": "low"},
        }
    )
    assert request.extras == {"logprobs": True, "top_logprobs": 5, "service_tier": "flex", "verbosity": "low"}


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        ({"previous_response_id": "resp_abc"}, "previous_response_id", "previous_response_id"),
        ({"conversation": "conv_123"}, "conversation", "conversation"),
        ({"background": True}, "background", "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "prompt"),
        ({"include": ["file_search_call.unknown"]}, "include", "file_search_call.unknown"),
        ({"truncation": "auto"}, "truncation", "auto"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
        (
            {"tools": [WEATHER_TOOL, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
            "tools[1].type",
            "file_search",
        ),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, "tools[0].type", "mcp"),
        (
            {"tool_choice": {"type": "web_search_preview"}, "tools": [WEATHER_TOOL]},
            "tool_choice",
            "web_search",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "item_reference"),
        (
            {"input": [{"type": "computer_call_output", "call_id": "c"}]},
            "input[0].type",
            "computer_call_output",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
            "input[0].content[0]",
            "input_file",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "input[0].content[0].file_id",
            "file_id",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]},
            "input[0].content[0].type",
            "input_audio",
        ),
        (
            {
                "input": [
                    {"role": "system", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
                ]
            },
            "input[0].content[0]",
            "input_image",
        ),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type", "grammar"),
    ],
)
def test_unsupported_features_are_refused_naming_the_parameter(body: dict, param: str, named: str) -> None:
    error = refusal({"model": "m", "input": "hi", **body})
    assert error.param == param
    assert named in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 42}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [{"role": "system", "content": "only a system prompt"}]}, "input"),
        ({"model": "m", "input": ["hi"]}, "input[0]"),
        ({"model": "m", "input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"model": "m", "input": [{"role": "user", "content": 7}]}, "input[0].content"),
        (
            {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:,x"}]}],
            },
            "input[0].content[0].image_url",
        ),
        (
            {
                "model": "m",
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "data:image/png;base64,!!"}],
                    }
                ],
            },
            "input[0].content[0].image_url",
        ),
        ({"model": "m", "input": "hi", "instructions": ["x"]}, "instructions"),
        ({"model": "m", "input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
        ({"model": "m", "input": "hi", "temperature": "hot"}, "temperature"),
        ({"model": "m", "input": "hi", "top_logprobs": -1}, "top_logprobs"),
        ({"model": "m", "input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"model": "m", "input": "hi", "reasoning": {"summary": "verbose"}}, "reasoning.summary"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        (
            {
                "model": "m",
                "input": "hi",
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "name": "nope"},
            },
            "tool_choice",
        ),
        (
            {"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
        ),
    ],
)
def test_malformed_requests_are_400s_naming_the_parameter(body: dict, param: str) -> None:
    assert refusal(body).param == param


# ============================================================================================
# Client side: complete responses
# ============================================================================================

REASONING_ANSWER = Answer(
    parts=[ThinkingPart("The user asks 2+2. That is 4."), TextPart("2 + 2 = 4.")],
    finish_reason="stop",
    usage=Usage(input_tokens=18, output_tokens=25),
)
TOOL_CALLS_ANSWER = Answer(
    parts=[
        ToolCallPart("call_8Kq2Vb1Xy3Zw", "get_weather", '{"city":"Paris"}'),
        ToolCallPart("call_9Lr3Wc2Yz4Ax", "get_weather", '{"city":"Rome"}'),
    ],
    finish_reason="tool_calls",
    usage=Usage(input_tokens=82, cached_input_tokens=64, output_tokens=46),
)


def test_reasoning_answer_becomes_the_full_response_object_with_cost() -> None:
    request = {
        "model": "qwen/qwen3-8b",
        "input": "What is 2+2?",
        "instructions": "Answer briefly.",
        "max_output_tokens": 256,
        "reasoning": {"effort": "low"},
    }
    assert codec.encode_response(REASONING_ANSWER, context(request), 0.0123) == {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "background": False,
        "completed_at": COMPLETED,
        "error": None,
        "incomplete_details": None,
        "instructions": "Answer briefly.",
        "max_output_tokens": 256,
        "max_tool_calls": None,
        "model": "qwen/qwen3-8b",
        "output": [
            {
                "id": f"rs_{SUFFIX}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "The user asks 2+2. That is 4."}],
            },
            {
                "id": f"msg_{SUFFIX}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "2 + 2 = 4.", "annotations": [], "logprobs": []}],
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "low", "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": None,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 18,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 25,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 43,
            "cost": 0.0123,
        },
        "user": None,
        "metadata": {},
    }


def test_tool_calls_become_function_call_items_and_request_settings_are_echoed() -> None:
    request = {
        "model": "openai/gpt-4o-mini",
        "input": "Weather in Paris and Rome?",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": True,
        "temperature": 0.3,
        "top_p": 0.8,
        "user": "u-1",
        "metadata": {"trace": "t-9"},
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
    }
    response = codec.encode_response(TOOL_CALLS_ANSWER, context(request), 0.5)
    assert response["output"] == [
        {
            "id": f"fc_{SUFFIX}_0",
            "type": "function_call",
            "status": "completed",
            "arguments": '{"city":"Paris"}',
            "call_id": "call_8Kq2Vb1Xy3Zw",
            "name": "get_weather",
        },
        {
            "id": f"fc_{SUFFIX}_1",
            "type": "function_call",
            "status": "completed",
            "arguments": '{"city":"Rome"}',
            "call_id": "call_9Lr3Wc2Yz4Ax",
            "name": "get_weather",
        },
    ]
    assert response["tools"] == [WEATHER_TOOL]
    assert response["tool_choice"] == "required"
    assert (response["temperature"], response["top_p"], response["user"]) == (0.3, 0.8, "u-1")
    assert response["metadata"] == {"trace": "t-9"}
    assert response["text"] == {"format": {"type": "json_object"}, "verbosity": "low"}
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == 64
    assert response["usage"]["total_tokens"] == 128


def test_cached_cache_write_and_reasoning_tokens_are_reported_in_usage() -> None:
    answer = Answer(
        parts=[TextPart("ok")],
        finish_reason="stop",
        usage=Usage(
            input_tokens=2143,
            cached_input_tokens=1920,
            cache_write_tokens=128,
            output_tokens=212,
            reasoning_tokens=192,
        ),
    )
    assert codec.encode_response(answer, context(), 0.002)["usage"] == {
        "input_tokens": 2143,
        "input_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 128},
        "output_tokens": 212,
        "output_tokens_details": {"reasoning_tokens": 192},
        "total_tokens": 2355,
        "cost": 0.002,
    }


@pytest.mark.parametrize(
    ("finish_reason", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_short_answers_are_incomplete_with_the_reason(finish_reason: Any, reason: str) -> None:
    answer = copy.deepcopy(REASONING_ANSWER)
    answer.finish_reason = finish_reason
    response = codec.encode_response(answer, context(), 0.0)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["completed_at"] is None
    assert response["output"][-1]["status"] == "incomplete"


def test_answer_with_only_reasoning_and_no_usage_still_has_a_message_and_usage() -> None:
    answer = Answer(parts=[ThinkingPart("Thinking only.")], finish_reason="length")
    response = codec.encode_response(answer, context(), 0.0)
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["output"][1]["content"][0]["text"] == ""
    assert response["usage"]["input_tokens"] == 0 and response["usage"]["output_tokens"] == 0


def test_text_split_around_a_tool_call_is_one_message_where_the_text_began() -> None:
    answer = Answer(
        parts=[TextPart("Let me "), ToolCallPart("call_x", "get_time", "{}"), TextPart("check.")],
        finish_reason="tool_calls",
    )
    output = codec.encode_response(answer, context(), 0.0)["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[0]["content"][0]["text"] == "Let me check."


def test_message_id_maps_back_to_the_generation_id() -> None:
    generation_id = new_generation_id()
    ctx = ResponseContext(generation_id=generation_id, model="m", created=CREATED, request={})
    response = codec.encode_response(REASONING_ANSWER, ctx, 0.0)
    assert response["id"] == derive(generation_id, "resp_")
    message = next(item for item in response["output"] if item["type"] == "message")
    assert to_generation_id(message["id"]) == generation_id


def test_complete_responses_validate_against_the_sdk_model() -> None:
    for answer in (REASONING_ANSWER, TOOL_CALLS_ANSWER):
        Response.model_validate(codec.encode_response(answer, context({"tools": [WEATHER_TOOL]}), 0.01))


# ============================================================================================
# Client side: streams
# ============================================================================================


def decode(frames: list[bytes]) -> list[dict]:
    """Events from SSE frames; each named like its `type` and valid for the SDK's event class."""
    decoder = SSEDecoder()
    events = []
    for frame in frames:
        for event in decoder.feed(frame):
            data = orjson.loads(event.data)
            assert event.event == data["type"]
            EVENT_CLASSES[data["type"]].model_validate(data)
            events.append(data)
    return events


def run_stream(
    events: list[StreamEvent], request: dict | None = None, usage: Usage | None = None, cost: float = 0.0
) -> list[dict]:
    encoder = codec.stream_encoder(context(request))
    frames = encoder.start()
    for event in events:
        frames += encoder.feed(event)
    frames += encoder.finish(usage or Usage(), cost)
    decoded = decode(frames)
    assert [e["sequence_number"] for e in decoded] == list(range(len(decoded)))
    return decoded


USAGE = Usage(input_tokens=21, output_tokens=9)
TEXT_EVENTS: list[StreamEvent] = [
    TextDelta("Hel"),
    TextDelta("lo, "),
    TextDelta("world!"),
    Finish("stop"),
    UsageUpdate(USAGE),
]


def test_text_stream_gives_the_exact_event_sequence_and_final_object() -> None:
    events = run_stream(TEXT_EVENTS, usage=USAGE, cost=0.0123)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[0]["response"]["id"] == RESPONSE_ID
    assert events[2]["item"] == {
        "id": f"msg_{SUFFIX}",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert [e["delta"] for e in events[4:7]] == ["Hel", "lo, ", "world!"]
    assert all(e["item_id"] == f"msg_{SUFFIX}" and e["output_index"] == 0 for e in events[3:9])
    assert events[9]["output_index"] == 0 and events[9]["item"]["id"] == f"msg_{SUFFIX}"
    assert events[7]["text"] == "Hello, world!"
    assert events[8]["part"] == {
        "type": "output_text",
        "text": "Hello, world!",
        "annotations": [],
        "logprobs": [],
    }
    final = events[-1]["response"]
    assert final["usage"] == {
        "input_tokens": 21,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 30,
        "cost": 0.0123,
    }
    whole = Answer(parts=[TextPart("Hello, world!")], finish_reason="stop", usage=USAGE)
    assert final == codec.encode_response(whole, context(), 0.0123)


def test_text_deltas_leave_as_soon_as_their_event_arrives() -> None:
    encoder = codec.stream_encoder(context())
    encoder.start()
    assert encoder.feed(TextDelta("")) == []
    assert encoder.feed(UsageUpdate(USAGE)) == []
    first = decode(encoder.feed(TextDelta("Hel")))
    assert [e["type"] for e in first] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert first[-1]["delta"] == "Hel"


def test_tool_call_arguments_split_across_events_stream_as_deltas() -> None:
    events = run_stream(
        [
            ToolCallStart(0, "call_8Kq2Vb1Xy3Zw", "get_weather"),
            ToolCallDelta(0, '{"ci'),
            ToolCallDelta(0, 'ty": "Pa'),
            ToolCallDelta(0, 'ris"}'),
            Finish("tool_calls"),
        ],
        request={"tools": [WEATHER_TOOL]},
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"] == {
        "id": f"fc_{SUFFIX}_0",
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": "call_8Kq2Vb1Xy3Zw",
        "name": "get_weather",
    }
    assert [e["delta"] for e in events[3:6]] == ['{"ci', 'ty": "Pa', 'ris"}']
    assert events[6]["arguments"] == '{"city": "Paris"}'
    done_item = {**events[2]["item"], "status": "completed", "arguments": '{"city": "Paris"}'}
    assert events[7]["item"] == done_item
    assert events[-1]["response"]["output"] == [done_item]
    assert events[-1]["response"]["status"] == "completed"


def test_parallel_tool_calls_each_get_their_own_item() -> None:
    events = run_stream(
        [
            ToolCallStart(0, "call_paris", "get_weather"),
            ToolCallDelta(0, '{"city":'),
            ToolCallStart(1, "call_rome", "get_weather"),
            ToolCallDelta(1, '{"city":"Rome"}'),
            ToolCallDelta(0, '"Paris"}'),
            Finish("tool_calls"),
        ]
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["call_id"]) for e in added] == [(0, "call_paris"), (1, "call_rome")]
    deltas = [
        (e["output_index"], e["delta"])
        for e in events
        if e["type"] == "response.function_call_arguments.delta"
    ]
    assert deltas == [(0, '{"city":'), (1, '{"city":"Rome"}'), (0, '"Paris"}')]
    output = events[-1]["response"]["output"]
    assert [(o["id"], o["call_id"], json.loads(o["arguments"])) for o in output] == [
        (f"fc_{SUFFIX}_0", "call_paris", {"city": "Paris"}),
        (f"fc_{SUFFIX}_1", "call_rome", {"city": "Rome"}),
    ]


def test_arguments_for_a_call_never_started_still_get_an_item() -> None:
    events = run_stream([ToolCallDelta(0, "{}"), Finish("tool_calls")])
    assert [e["type"] for e in events[2:6]] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    call = events[-1]["response"]["output"][0]
    assert call["arguments"] == "{}" and call["call_id"].startswith("call_")


def test_text_interleaved_with_a_tool_call_stays_in_one_message() -> None:
    events = run_stream(
        [
            TextDelta("Let me "),
            ToolCallStart(0, "call_x", "get_time"),
            ToolCallDelta(0, "{}"),
            TextDelta("check."),
            Finish("tool_calls"),
        ]
    )
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert output[0]["content"][0]["text"] == "Let me check."
    text_deltas = [
        (e["output_index"], e["delta"]) for e in events if e["type"] == "response.output_text.delta"
    ]
    assert text_deltas == [(0, "Let me "), (0, "check.")]
    closes = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert closes == [0, 1]


def test_thinking_streams_as_a_reasoning_summary_closed_before_the_answer() -> None:
    events = run_stream(
        [
            ThinkingDelta("Two plus "),
            ThinkingDelta("two is four."),
            ThinkingSignature("EqQBCkYIBxgCKkD"),  # Anthropic's proof: no Responses field
            TextDelta("4"),
            Finish("stop"),
        ],
        usage=Usage(input_tokens=21, output_tokens=9, reasoning_tokens=6),
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"] == {"id": f"rs_{SUFFIX}", "type": "reasoning", "summary": []}
    assert events[6]["text"] == "Two plus two is four."
    reasoning = {
        "id": f"rs_{SUFFIX}",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Two plus two is four."}],
    }
    assert events[8]["item"] == reasoning
    assert events[9]["output_index"] == 1
    assert events[-1]["response"]["output"][0] == reasoning
    assert events[-1]["response"]["usage"]["output_tokens_details"] == {"reasoning_tokens": 6}


def test_thinking_after_a_tool_call_opens_a_second_reasoning_item() -> None:
    events = run_stream(
        [ThinkingDelta("a"), ToolCallStart(0, "call_1", "f"), ThinkingDelta("b"), Finish("tool_calls")]
    )
    ids = [o["id"] for o in events[-1]["response"]["output"]]
    assert ids == [f"rs_{SUFFIX}", f"fc_{SUFFIX}_0", f"rs_{SUFFIX}_1"]


def test_length_finish_ends_with_response_incomplete() -> None:
    events = run_stream([TextDelta("The quick brown"), Finish("length")], request={"max_output_tokens": 3})
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert final["max_output_tokens"] == 3
    assert final["output"][0]["status"] == "incomplete"


def test_stream_without_any_output_still_ends_with_a_valid_response() -> None:
    events = run_stream([Finish("stop")])
    final = events[-1]["response"]
    assert final["output"][0]["content"] == [
        {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    ]
    assert final["usage"]["input_tokens"] == 0
    Response.model_validate(final)


def test_failure_mid_stream_sends_error_then_response_failed_keeping_partial_text() -> None:
    encoder = codec.stream_encoder(context())
    frames = encoder.start() + encoder.feed(TextDelta("Partial"))
    frames += encoder.fail("server_error", "upstream reset the connection")
    events = decode(frames)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2] == {
        "type": "error",
        "sequence_number": events[-2]["sequence_number"],
        "code": "server_error",
        "message": "upstream reset the connection",
        "param": None,
    }
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "upstream reset the connection"}
    assert failed["output"][0]["content"][0]["text"] == "Partial"
    assert encoder.feed(TextDelta("late")) == []
    assert encoder.finish(Usage(), 0.0) == []


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("provider_error", "server_error"),
        ("timeout_error", "server_error"),
        ("rate_limit_error", "rate_limit_exceeded"),
    ],
)
def test_gateway_reasons_outside_openais_enum_fail_the_response_with_a_code_it_knows(
    reason: str, code: str
) -> None:
    events = decode(codec.stream_encoder(context()).fail(reason, "upstream 502"))
    assert events[-2]["code"] == reason
    assert events[-1]["response"]["error"] == {"code": code, "message": "upstream 502"}


# ============================================================================================
# Provider side: requests
# ============================================================================================


def test_agent_request_encodes_to_the_exact_responses_body() -> None:
    request = CODEC.decode_request(golden("client_request_agent.json"))
    body = CODEC.encode_request(request, Target(provider="openai", model="gpt-5-2025-08-07"))
    assert body == golden("provider_request_agent.json")
    for item in body["input"]:
        INPUT_ITEM.validate_python(item)  # each item parses in the SDK's typed params
    for tool in body["tools"]:
        FUNCTION_TOOL.validate_python(tool)


def test_encoding_then_decoding_a_request_gives_it_back() -> None:
    original = CODEC.decode_request(golden("client_request_agent.json"))
    original.system = [TextPart("\n\n".join(part.text for part in original.system))]  # one instructions text
    again = CODEC.decode_request({**CODEC.encode_request(original, TARGET), "model": original.model})
    assert again == original


def test_plain_request_sends_only_what_was_asked_and_never_stores() -> None:
    body = CODEC.encode_request(Request(model="m", messages=[Message("user", [TextPart("Hi")])]), TARGET)
    assert body == {
        "model": "gpt-5-mini-2025-08-07",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        "store": False,
    }


def test_tools_are_flat_functions_with_strict_always_explicit() -> None:
    request = Request(
        model="m",
        messages=[Message("user", [TextPart("hi")])],
        tools=[Tool("get_weather", "Weather", WEATHER_TOOL["parameters"], strict=True), Tool("get_time")],
        parallel_tool_calls=False,
    )
    body = CODEC.encode_request(request, TARGET)
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather",
            "parameters": WEATHER_TOOL["parameters"],
            "strict": True,
        },
        # Responses functions are strict by default: a schema-less, non-strict tool says so.
        {"type": "function", "name": "get_time", "parameters": None, "strict": False},
    ]
    assert body["parallel_tool_calls"] is False
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("tool", name="get_time"), {"type": "function", "name": "get_time"}),
    ],
)
def test_tool_choice_encodes_to_its_responses_form(choice: ToolChoice, expected: Any) -> None:
    request = Request(
        model="m", messages=[Message("user", [TextPart("hi")])], tools=[Tool("get_time")], tool_choice=choice
    )
    assert CODEC.encode_request(request, TARGET)["tool_choice"] == expected


def test_parallel_tool_results_become_function_call_outputs_in_order() -> None:
    request = Request(
        model="m",
        messages=[
            Message("user", [TextPart("Weather?")]),
            Message(
                "assistant",
                [
                    ThinkingPart("Two cities.", signature="EqQBCkYIBxgCKkD"),  # dropped: provider-specific
                    ToolCallPart("toolu_01A", "get_weather", '{"city":"Paris"}'),
                    ToolCallPart("toolu_01B", "get_weather", '{"city":"Rome"}'),
                ],
            ),
            Message(
                "user",
                [
                    ToolResultPart("toolu_01A", [TextPart("18C")]),
                    ToolResultPart("toolu_01B", [TextPart("no such city")], is_error=True),
                    ToolResultPart(
                        "toolu_01C", [TextPart("map:"), ImagePart(data=PNG, media_type="image/png")]
                    ),
                    TextPart("Thanks."),
                ],
            ),
        ],
    )
    assert CODEC.encode_request(request, TARGET)["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {
            "type": "function_call",
            "call_id": "toolu_01A",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "toolu_01B",
            "name": "get_weather",
            "arguments": '{"city":"Rome"}',
        },
        {"type": "function_call_output", "call_id": "toolu_01A", "output": "18C"},
        {"type": "function_call_output", "call_id": "toolu_01B", "output": "Error: no such city"},
        {
            "type": "function_call_output",
            "call_id": "toolu_01C",
            "output": [
                {"type": "input_text", "text": "map:"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks."}]},
    ]


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (Reasoning(effort="low"), {"effort": "low", "summary": "auto"}),
        (Reasoning(effort="minimal", include_thoughts=False), {"effort": "minimal"}),
        (Reasoning(budget_tokens=3000), {"effort": "medium", "summary": "auto"}),
        (Reasoning(budget_tokens=EFFORT_BUDGET_TOKENS["low"]), {"effort": "low", "summary": "auto"}),
        (Reasoning(budget_tokens=64000, include_thoughts=False), {"effort": "high"}),
    ],
)
def test_reasoning_budget_or_effort_becomes_an_effort(reasoning: Reasoning, expected: dict) -> None:
    request = Request(model="m", messages=[Message("user", [TextPart("hi")])], reasoning=reasoning)
    assert CODEC.encode_request(request, TARGET)["reasoning"] == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (OutputFormat("json_object"), {"type": "json_object"}),
        (OutputFormat("text"), {"type": "text"}),
        (
            OutputFormat("json_schema", schema={"type": "object"}),
            {"type": "json_schema", "name": "response", "schema": {"type": "object"}},
        ),
        (
            OutputFormat("json_schema", name="sum", schema={"type": "object"}, strict=True),
            {"type": "json_schema", "name": "sum", "schema": {"type": "object"}, "strict": True},
        ),
    ],
)
def test_output_format_becomes_text_format(fmt: OutputFormat, expected: dict) -> None:
    request = Request(model="m", messages=[Message("user", [TextPart("hi")])], output_format=fmt)
    assert CODEC.encode_request(request, TARGET)["text"] == {"format": expected}


def test_extras_responses_can_honour_are_sent() -> None:
    request = Request(
        model="m",
        messages=[Message("user", [TextPart("hi")])],
        extras={"logprobs": True, "top_logprobs": 3, "service_tier": "flex", "verbosity": "high"},
        output_format=OutputFormat("json_object"),
        max_output_tokens=100,
        temperature=0.5,
        top_p=0.9,
        user="u-7",
        stream=True,
    )
    body = CODEC.encode_request(request, TARGET)
    assert body["include"] == ["message.output_text.logprobs"]
    assert (body["top_logprobs"], body["service_tier"]) == (3, "flex")
    assert body["text"] == {"format": {"type": "json_object"}, "verbosity": "high"}
    assert (body["max_output_tokens"], body["temperature"], body["top_p"], body["user"]) == (
        100,
        0.5,
        0.9,
        "u-7",
    )
    assert body["stream"] is True and body["store"] is False


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"extras": {"n": 2}}, "n"),
        ({"extras": {"seed": 7}}, "seed"),
        ({"extras": {"logit_bias": {"50256": -100}}}, "logit_bias"),
        ({"extras": {"presence_penalty": 0.5}}, "presence_penalty"),
        ({"extras": {"frequency_penalty": 0.5}}, "frequency_penalty"),
        ({"stop": ["END"]}, "stop"),
        ({"top_k": 40}, "top_k"),
        ({"tool_choice": ToolChoice("required")}, "tool_choice"),
        ({"messages": [Message("assistant", [ImagePart(url="https://x/y.png")])]}, "messages[0].image"),
    ],
)
def test_what_responses_cannot_express_is_refused_naming_param_and_provider(change: dict, param: str) -> None:
    request = Request(model="m", messages=[Message("user", [TextPart("hi")])])
    for name, value in change.items():
        setattr(request, name, value)
    with pytest.raises(GatewayError) as caught:
        CODEC.encode_request(request, Target(provider="xai", model="grok-4"))
    assert caught.value.status == 400 and caught.value.param == param
    assert caught.value.message == f"'{param}' is not supported by provider 'xai' (responses)"


# ============================================================================================
# Provider side: complete responses
# ============================================================================================


def test_provider_golden_payloads_are_valid_sdk_objects() -> None:
    for path in sorted(GOLDEN.glob("provider_response_*.json")):
        Response.model_validate(json.loads(path.read_text()))
    for path in sorted(GOLDEN.glob("provider_stream_*.sse")):
        for event in golden_events(path.name):
            EVENT_CLASSES[orjson.loads(event.data)["type"]].model_validate_json(event.data)


def test_reasoning_response_decodes_with_cached_cache_write_and_reasoning_tokens() -> None:
    answer = CODEC.decode_response(golden("provider_response_reasoning_cached.json"))
    assert answer == Answer(
        parts=[
            ThinkingPart(
                "**Adding two numbers**\n\nThe user asks for 2+2, which is 4.\n\n"
                "**Keeping it brief**\n\nOne short sentence is enough."
            ),
            TextPart("2 + 2 = 4."),
        ],
        finish_reason="stop",
        usage=Usage(
            input_tokens=2143,
            cached_input_tokens=1920,
            cache_write_tokens=128,
            output_tokens=212,
            reasoning_tokens=192,
        ),
        id="resp_68d0f1c2a4e08190b5f3c1d2e7a9b4c60c3f5e1d2a7b8c9d",
        model="gpt-5-mini-2025-08-07",
    )


def test_parallel_function_calls_decode_as_tool_calls_and_finish_tool_calls() -> None:
    answer = CODEC.decode_response(golden("provider_response_parallel_tool_calls.json"))
    assert answer.parts == [  # the reasoning item without a summary gives no thinking part
        ToolCallPart("call_8Kq2Vb1Xy3ZwLm4N", "get_weather", '{"city":"Paris","unit":"celsius"}'),
        ToolCallPart("call_9Lr3Wc2Yz4AxPq7R", "get_weather", '{"city":"Rome","unit":"celsius"}'),
    ]
    assert answer.finish_reason == "tool_calls"
    assert answer.usage == Usage(input_tokens=412, output_tokens=187, reasoning_tokens=128)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), (None, "length")],
)
def test_incomplete_responses_finish_with_the_matching_reason(reason: str | None, finish: str) -> None:
    body = golden("provider_response_incomplete_max_tokens.json")
    body["incomplete_details"] = {"reason": reason}
    answer = CODEC.decode_response(body)
    assert answer.finish_reason == finish
    assert answer.parts == [TextPart("The quick brown fox jumps over")]


def test_a_refusal_is_the_answers_text() -> None:
    body = golden("provider_response_incomplete_max_tokens.json")
    body.update(status="completed", incomplete_details=None)
    body["output"][0]["content"] = [{"type": "refusal", "refusal": "I can't help with that."}]
    answer = CODEC.decode_response(body)
    assert (answer.parts, answer.finish_reason) == ([TextPart("I can't help with that.")], "stop")


def test_a_failed_response_is_a_provider_error_with_its_message() -> None:
    body = golden("provider_response_incomplete_max_tokens.json")
    body.update(status="failed", error={"code": "server_error", "message": "The server had an error."})
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_response(body)
    assert (caught.value.reason, caught.value.message) == ("provider_error", "The server had an error.")


# ============================================================================================
# Provider side: streams
# ============================================================================================


def decode_stream(events: list[ServerSentEvent]) -> tuple[list[StreamEvent], Any]:
    decoder = CODEC.stream_decoder()
    out: list[StreamEvent] = []
    for event in events:
        out += decoder.feed(event)
    return out, decoder


def sse(kind: str, **payload: Any) -> ServerSentEvent:
    return ServerSentEvent(kind, orjson.dumps({"type": kind, "sequence_number": 0, **payload}).decode())


def test_reasoning_and_text_stream_decodes_to_exact_canonical_events() -> None:
    events, decoder = decode_stream(golden_events("provider_stream_reasoning_text.sse"))
    usage = Usage(input_tokens=1211, cached_input_tokens=1024, output_tokens=96, reasoning_tokens=64)
    assert events == [
        ThinkingDelta("**Adding"),
        ThinkingDelta(" two numbers**\n\n"),
        ThinkingDelta("The user asks"),
        ThinkingDelta(" for 2+2."),
        ThinkingDelta("\n\n"),  # a new summary part starts a new paragraph
        ThinkingDelta("**Answering**\n\n"),
        ThinkingDelta("It is 4."),
        TextDelta("2"),
        TextDelta(" +"),
        TextDelta(" 2"),
        TextDelta(" ="),
        TextDelta(" 4"),
        TextDelta("."),
        UsageUpdate(usage),
        Finish("stop"),
    ]
    assert (decoder.usage, decoder.finish_reason, decoder.output_chars) == (usage, "stop", len("2 + 2 = 4."))


def test_parallel_tool_call_stream_keeps_every_argument_fragment() -> None:
    events, decoder = decode_stream(golden_events("provider_stream_parallel_tools.sse"))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [
        ToolCallStart(0, "call_Vb1Xy3ZwLm4N8Kq2", "get_weather"),
        ToolCallStart(1, "call_Wc2Yz4AxPq7R9Lr3", "get_weather"),
    ]
    for index, city in ((0, "Paris"), (1, "Rome")):
        fragments = [e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == index]
        assert len(fragments) == 10
        assert json.loads("".join(fragments)) == {"city": city, "unit": "celsius"}
    assert events[-2:] == [UsageUpdate(Usage(input_tokens=388, output_tokens=62)), Finish("tool_calls")]
    assert decoder.finish_reason == "tool_calls"
    assert decoder.output_chars == len('{"city":"Paris","unit":"celsius"}{"city":"Rome","unit":"celsius"}')


def test_a_failed_response_mid_stream_raises_the_providers_message() -> None:
    frames = golden_events("provider_stream_failed_midway.sse")
    decoder = CODEC.stream_decoder()
    seen: list[StreamEvent] = []
    with pytest.raises(GatewayError) as caught:
        for event in frames:
            seen += decoder.feed(event)
    assert seen == [TextDelta("Once"), TextDelta(" upon")]
    assert caught.value.reason == "provider_error"
    assert caught.value.message == "The server had an error while processing your request. Sorry about that!"


def test_an_error_event_raises_the_providers_message() -> None:
    decoder = CODEC.stream_decoder()
    with pytest.raises(GatewayError) as caught:
        decoder.feed(sse("error", code="ERR_SOMETHING", message="Something went wrong", param=None))
    assert (caught.value.reason, caught.value.message) == ("provider_error", "Something went wrong")


def test_raw_reasoning_text_deltas_are_thinking() -> None:
    events, _ = decode_stream(
        [
            sse(
                "response.output_item.added",
                output_index=0,
                item={"id": "rs_1", "type": "reasoning", "summary": []},
            ),
            sse(
                "response.reasoning_text.delta",
                item_id="rs_1",
                output_index=0,
                content_index=0,
                delta="We need",
            ),
            sse(
                "response.reasoning_text.delta", item_id="rs_1", output_index=0, content_index=0, delta=" 4."
            ),
            sse(
                "response.output_item.done",
                output_index=0,
                item={
                    "id": "rs_1",
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "We need 4."}],
                },
            ),
        ]
    )
    assert events == [ThinkingDelta("We need"), ThinkingDelta(" 4.")]


def test_output_sent_only_in_done_events_is_emitted_once() -> None:
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
    }
    completed = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [message, call],
        "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
    }
    events, _ = decode_stream(
        [
            sse("response.output_item.done", output_index=0, item=message),
            sse("response.output_item.done", output_index=1, item=call),
            sse("response.completed", response=completed),
        ]
    )
    assert events == [
        TextDelta("Done."),
        ToolCallStart(0, "call_1", "f"),
        ToolCallDelta(0, '{"a":1}'),
        UsageUpdate(Usage(input_tokens=5, output_tokens=3)),
        Finish("tool_calls"),
    ]


def test_an_incomplete_stream_finishes_with_length_and_reports_usage() -> None:
    events, decoder = decode_stream(
        [
            sse("response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta="The"),
            sse(
                "response.incomplete",
                response={
                    "id": "resp_1",
                    "object": "response",
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                    "output": [],
                    "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6},
                },
            ),
        ]
    )
    assert events[-1] == Finish("length")
    assert decoder.usage == Usage(input_tokens=5, output_tokens=1)


def test_a_provider_stream_reencodes_for_a_responses_client() -> None:
    """Provider stream → canonical events → client stream, as a translation would chain them."""
    events, decoder = decode_stream(golden_events("provider_stream_parallel_tools.sse"))
    encoded = run_stream(events, usage=decoder.usage, cost=0.001)
    output = encoded[-1]["response"]["output"]
    assert [(o["call_id"], json.loads(o["arguments"])["city"]) for o in output] == [
        ("call_Vb1Xy3ZwLm4N8Kq2", "Paris"),
        ("call_Wc2Yz4AxPq7R9Lr3", "Rome"),
    ]


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key="sk-test")
    with FakeOpenAIServer(fake=fake) as server:
        yield fake, server.base_url


def test_codec_talks_to_a_real_format_responses_server(fake_openai: tuple[FakeOpenAI, str]) -> None:
    fake, base_url = fake_openai
    args = '{"city":"Paris"}'
    fake.enqueue(Behaviour(text="Checking.", tool_calls=[{"name": "get_weather", "arguments": args}]))
    fake.enqueue(Behaviour(text="Hello big world"))
    request = Request(
        model="m",
        messages=[Message("user", [TextPart("Weather in Paris?")])],
        system=[TextPart("Be brief.")],
        tools=[Tool("get_weather", None, WEATHER_TOOL["parameters"])],
    )
    headers = {"authorization": "Bearer sk-test"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
        reply = http.post("/responses", json=CODEC.encode_request(request, TARGET))
        answer = CODEC.decode_response(reply.json())
        assert fake.requests[-1].body["instructions"] == "Be brief."
        assert answer.parts[0] == TextPart("Checking.")
        assert isinstance(answer.parts[1], ToolCallPart) and answer.parts[1].arguments == args
        assert answer.finish_reason == "tool_calls" and answer.usage is not None

        request.stream = True
        decoder = CODEC.stream_decoder()
        events: list[StreamEvent] = []
        sse_decoder = SSEDecoder()
        with http.stream("POST", "/responses", json=CODEC.encode_request(request, TARGET)) as streamed:
            for chunk in streamed.iter_bytes():
                for event in sse_decoder.feed(chunk):
                    events += decoder.feed(event)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " big", " world"]
    assert decoder.finish_reason == "stop" and decoder.usage is not None


# ============================================================================================
# The official OpenAI SDK against a server built on the codec
# ============================================================================================

STREAM_SCENARIOS: dict[str, list[StreamEvent]] = {
    "text": [*TEXT_EVENTS],
    "tools": [
        ThinkingDelta("Need the weather tool."),
        TextDelta("Let me check."),
        ToolCallStart(0, "call_8Kq2Vb1Xy3Zw", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Paris"}'),
        Finish("tool_calls"),
        UsageUpdate(USAGE),
    ],
}
ANSWERS = {"text": REASONING_ANSWER, "tools": TOOL_CALLS_ANSWER}


async def responses_endpoint(http: HttpRequest) -> HttpResponse:
    body = await http.json()
    try:
        request = CODEC.decode_request(body)
    except GatewayError as error:
        return HttpResponse(error.json(), status_code=error.status, media_type="application/json")
    http.app.state.requests.append(request)
    ctx = ResponseContext(generation_id=GENERATION_ID, model=request.model, created=CREATED, request=body)
    if not request.stream:
        response = CODEC.encode_response(ANSWERS[request.model], ctx, 0.0123)
        return HttpResponse(orjson.dumps(response), media_type="application/json")
    encoder = CODEC.stream_encoder(ctx)

    async def frames() -> typing.AsyncIterator[bytes]:
        for frame in encoder.start():
            yield frame
        for event in STREAM_SCENARIOS[request.model]:
            for frame in encoder.feed(event):
                yield frame
        for frame in encoder.finish(USAGE, 0.0123):
            yield frame

    return StreamingResponse(frames(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def sdk_server() -> Iterator[tuple[openai.OpenAI, list[Request]]]:
    app = Starlette(routes=[Route("/v1/responses", responses_endpoint, methods=["POST"])])
    app.state.requests = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=10)
    try:
        yield client, app.state.requests
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_sdk_reads_a_complete_response(sdk_server: tuple[openai.OpenAI, list[Request]]) -> None:
    client, requests = sdk_server
    response = client.responses.create(model="text", input="What is 2+2?", instructions="Answer briefly.")
    assert requests[-1].system == [TextPart("Answer briefly.")]
    assert response.id == RESPONSE_ID
    assert response.output_text == "2 + 2 = 4."
    assert [type(item).__name__ for item in response.output] == [
        "ResponseReasoningItem",
        "ResponseOutputMessage",
    ]
    message = response.output[1]
    assert message.type == "message"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        18,
        25,
        43,
    )
    assert response.usage.model_extra == {"cost": 0.0123}


def test_sdk_parses_every_streamed_event_into_its_typed_class(
    sdk_server: tuple[openai.OpenAI, list[Request]],
) -> None:
    client, requests = sdk_server
    tools: Any = [WEATHER_TOOL]
    with client.responses.create(
        model="tools", input="Weather in Paris?", tools=tools, stream=True
    ) as stream:
        events = list(stream)
    assert requests[-1].stream is True and requests[-1].tools[0].name == "get_weather"
    names = [type(event).__name__ for event in events]
    assert names == [EVENT_CLASSES[event.type].__name__ for event in events]
    assert "ResponseTextDeltaEvent" in names
    assert "ResponseFunctionCallArgumentsDeltaEvent" in names
    assert "ResponseReasoningSummaryTextDeltaEvent" in names
    assert names[-1] == "ResponseCompletedEvent"
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_sdk_stream_helper_assembles_the_final_response(
    sdk_server: tuple[openai.OpenAI, list[Request]],
) -> None:
    client, _ = sdk_server
    tools: Any = [WEATHER_TOOL]
    with client.responses.stream(model="tools", input="Weather in Paris?", tools=tools) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Let me check."
    assert final.output_text == "Let me check."
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id == "call_8Kq2Vb1Xy3Zw"
    assert final.usage is not None and final.usage.model_extra == {"cost": 0.0123}


def test_sdk_sees_a_refused_parameter_as_a_bad_request(
    sdk_server: tuple[openai.OpenAI, list[Request]],
) -> None:
    client, _ = sdk_server
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="text", input="hi", previous_response_id="resp_earlier")
    assert caught.value.status_code == 400
    assert "previous_response_id" in caught.value.message
