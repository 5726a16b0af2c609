"""Responses API ⇄ Chat Completions translation: requests, complete responses, streams, and
the official OpenAI SDK reading what the translation produces.

Chat payloads below are written in the exact shapes vLLM, Ollama and OpenAI send (ids,
``object``, role-only first chunk, ``finish_reason`` chunk, usage-only last chunk).
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import typing
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
import uvicorn
from openai.types.responses import Response, ResponseStreamEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as HttpResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.canonical import Usage
from aistats_gateway.formats.openai_responses import (
    ChatStreamToResponses,
    chat_response_to_responses,
    responses_request_to_chat,
)
from aistats_gateway.formats.sse import SSEDecoder
from aistats_gateway.ids import derive, new_generation_id, to_generation_id

RESPONSE_ID = "resp_01JZ8Q4T5W6X7Y8Z9A0B1C2D3E"
SUFFIX = RESPONSE_ID[len("resp_") :]
CREATED = 1767225600
COMPLETED = 1767225603

# The SDK's own event classes, by their `type` literal: what a strict client validates against.
EVENT_CLASSES: dict[str, Any] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


def clock() -> float:
    return float(COMPLETED)


def translate(body: dict, upstream_model: str = "Qwen/Qwen3-8B") -> dict:
    return responses_request_to_chat(body, upstream_model=upstream_model)


def refusal(body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        translate(body)
    assert caught.value.status == 400
    assert caught.value.reason == "validation_error"
    return caught.value


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def test_string_input_becomes_one_user_message_for_the_upstream_model() -> None:
    chat = translate({"model": "qwen/qwen3-8b", "input": "Hello"})
    assert chat == {"model": "Qwen/Qwen3-8B", "messages": [{"role": "user", "content": "Hello"}]}


def test_instructions_lead_and_developer_messages_become_system_messages() -> None:
    chat = translate(
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
                {"role": "user", "content": "Encore"},
            ],
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": "Answer in French."},
        {"role": "system", "content": "No emoji."},
        {"role": "user", "content": "Hi\nthere"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "Encore"},
    ]


def test_images_become_chat_image_url_parts() -> None:
    chat = translate(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is in these?"},
                        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                    ],
                }
            ],
        }
    )
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]


def test_function_call_history_merges_into_one_assistant_turn_followed_by_tool_messages() -> None:
    chat = translate(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Need tools."}],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking."}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_paris",
                    "name": "get_weather",
                    "arguments": '{"city":"Paris"}',
                    "status": "completed",
                },
                {
                    "type": "function_call",
                    "call_id": "call_rome",
                    "name": "get_weather",
                    "arguments": '{"city":"Rome"}',
                },
                {"type": "function_call_output", "call_id": "call_paris", "output": '{"temp_c":18}'},
                {
                    "type": "function_call_output",
                    "call_id": "call_rome",
                    "output": [{"type": "input_text", "text": "24C, sunny"}],
                },
                {"type": "function_call", "call_id": "call_nice", "name": "get_weather", "arguments": "{}"},
            ],
        }
    )
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_paris",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_rome",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_paris", "content": '{"temp_c":18}'},
        {"role": "tool", "tool_call_id": "call_rome", "content": "24C, sunny"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_nice",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
    ]


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


def test_function_tools_become_chat_tools() -> None:
    chat = translate(
        {"model": "m", "input": "hi", "tools": [WEATHER_TOOL, TIME_TOOL], "parallel_tool_calls": False}
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER_TOOL["parameters"],
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "get_time"}},
    ]
    assert chat["parallel_tool_calls"] is False
    assert "tool_choice" not in chat


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "get_time"}, {"type": "function", "function": {"name": "get_time"}}),
    ],
)
def test_tool_choice_maps_to_its_chat_equivalent(tool_choice: Any, expected: Any) -> None:
    chat = translate(
        {"model": "m", "input": "hi", "tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": tool_choice}
    )
    assert chat["tool_choice"] == expected


def test_allowed_tools_choice_sends_only_the_allowed_tools() -> None:
    chat = translate(
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
    assert [t["function"]["name"] for t in chat["tools"]] == ["get_time"]
    assert chat["tool_choice"] == "required"


def test_tool_choice_without_tools_is_dropped_unless_it_demands_a_call() -> None:
    chat = translate(
        {"model": "m", "input": "hi", "tools": [], "tool_choice": "auto", "parallel_tool_calls": True}
    )
    assert "tool_choice" not in chat and "tools" not in chat and "parallel_tool_calls" not in chat
    assert refusal({"model": "m", "input": "hi", "tool_choice": "required"}).param == "tool_choice"


def test_json_schema_text_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    chat = translate(
        {
            "model": "m",
            "input": "2+2?",
            "text": {"format": {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}},
        }
    )
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "sum", "schema": schema, "strict": True},
    }
    chat = translate(
        {"model": "m", "input": "2+2?", "text": {"format": {"type": "json_object"}, "verbosity": "low"}}
    )
    assert chat["response_format"] == {"type": "json_object"}
    assert "verbosity" not in chat
    assert "response_format" not in translate(
        {"model": "m", "input": "x", "text": {"format": {"type": "text"}}}
    )


def test_sampling_reasoning_and_streaming_settings_carry_over() -> None:
    chat = translate(
        {
            "model": "m",
            "input": "hi",
            "max_output_tokens": 512,
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "user-42",
            "reasoning": {"effort": "high", "summary": "auto"},
            "stream": True,
            "stream_options": {"include_obfuscation": False},
            "metadata": {"trace": "abc"},
            "store": True,
            "service_tier": "auto",
            "truncation": "disabled",
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "k",
        }
    )
    assert chat == {
        "model": "Qwen/Qwen3-8B",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "reasoning_effort": "high",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        ({"previous_response_id": "resp_abc"}, "previous_response_id", "previous_response_id"),
        ({"conversation": "conv_123"}, "conversation", "conversation"),
        ({"background": True}, "background", "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "prompt"),
        ({"include": ["message.output_text.logprobs"]}, "include", "message.output_text.logprobs"),
        ({"top_logprobs": 3}, "top_logprobs", "top_logprobs"),
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
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 42}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": ["hi"]}, "input[0]"),
        ({"model": "m", "input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"model": "m", "input": [{"role": "user", "content": 7}]}, "input[0].content"),
        (
            {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"model": "m", "input": "hi", "instructions": ["x"]}, "instructions"),
        ({"model": "m", "input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
        ({"model": "m", "input": "hi", "temperature": "hot"}, "temperature"),
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


# --------------------------------------------------------------------------------------------
# Complete responses
# --------------------------------------------------------------------------------------------

VLLM_REASONING_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-9f3a2b7c41d84e5f8a1b2c3d4e5f6a7b",
    "object": "chat.completion",
    "created": 1767225601,
    "model": "Qwen/Qwen3-8B",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "reasoning_content": "The user asks 2+2. That is 4.",
                "content": "2 + 2 = 4.",
                "tool_calls": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
        }
    ],
    "usage": {
        "prompt_tokens": 18,
        "total_tokens": 43,
        "completion_tokens": 25,
        "prompt_tokens_details": None,
    },
    "prompt_logprobs": None,
    "kv_transfer_params": None,
}

OPENAI_TOOL_CALLS_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-BxQ1l8mQ2P3r4S5t6U7v8W9x0Y1z",
    "object": "chat.completion",
    "created": 1767225601,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_8Kq2Vb1Xy3Zw",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_9Lr3Wc2Yz4Ax",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 82,
        "completion_tokens": 46,
        "total_tokens": 128,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_34a54ae93c",
}


def to_responses(chat: dict, request: dict, response_id: str = RESPONSE_ID) -> dict:
    return chat_response_to_responses(
        chat,
        response_id=response_id,
        model=request.get("model", "m"),
        created_at=CREATED,
        request=request,
        clock=clock,
    )


def test_vllm_completion_with_reasoning_becomes_the_full_response_object() -> None:
    request = {
        "model": "qwen/qwen3-8b",
        "input": "What is 2+2?",
        "instructions": "Answer briefly.",
        "max_output_tokens": 256,
        "reasoning": {"effort": "low"},
    }
    assert to_responses(VLLM_REASONING_COMPLETION, request) == {
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
    response = to_responses(OPENAI_TOOL_CALLS_COMPLETION, request)
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


@pytest.mark.parametrize(
    ("finish_reason", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_short_completions_are_incomplete_with_the_reason(finish_reason: str, reason: str) -> None:
    chat = copy.deepcopy(VLLM_REASONING_COMPLETION)
    chat["choices"][0]["finish_reason"] = finish_reason
    response = to_responses(chat, {"model": "m"})
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["completed_at"] is None
    assert response["output"][-1]["status"] == "incomplete"


def test_ollama_reasoning_field_and_missing_usage_still_give_a_usage_object() -> None:
    ollama = {
        "id": "chatcmpl-412",
        "object": "chat.completion",
        "created": 1767225601,
        "model": "qwen3:8b",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "reasoning": "Thinking only."},
                "finish_reason": "length",
            }
        ],
    }
    response = to_responses(ollama, {"model": "m"})
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["output"][0]["summary"] == [{"type": "summary_text", "text": "Thinking only."}]
    assert response["output"][1]["content"][0]["text"] == ""
    assert response["usage"]["input_tokens"] == 0 and response["usage"]["output_tokens"] == 0


def test_message_id_maps_back_to_the_generation_id() -> None:
    generation_id = new_generation_id()
    response = to_responses(
        VLLM_REASONING_COMPLETION, {"model": "m"}, response_id=derive(generation_id, "resp_")
    )
    message = next(item for item in response["output"] if item["type"] == "message")
    assert to_generation_id(message["id"]) == generation_id


def test_complete_responses_validate_against_the_sdk_model() -> None:
    for chat in (VLLM_REASONING_COMPLETION, OPENAI_TOOL_CALLS_COMPLETION):
        Response.model_validate(to_responses(chat, {"model": "m", "tools": [WEATHER_TOOL]}))


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    """A vLLM-shaped chat.completion.chunk."""
    body: dict[str, Any] = {
        "id": "chatcmpl-5c1e2d3f4a5b6c7d",
        "object": "chat.completion.chunk",
        "created": 1767225601,
        "model": "Qwen/Qwen3-8B",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


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
    chunks: list[dict], request: dict | None = None, usage_extra: dict | None = None
) -> tuple[list[dict], ChatStreamToResponses]:
    translator = ChatStreamToResponses(
        response_id=RESPONSE_ID, model="qwen/qwen3-8b", created_at=CREATED, request=request or {}, clock=clock
    )
    frames = translator.start()
    for c in chunks:
        frames += translator.feed(c)
    frames += translator.finish(usage_extra=usage_extra)
    events = decode(frames)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events, translator


USAGE = {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo, "}),
    chunk({"content": "world!"}),
    chunk({}, finish="stop"),
    chunk(usage=USAGE),
]


def test_text_stream_gives_the_exact_event_sequence_and_final_object() -> None:
    events, translator = run_stream(TEXT_CHUNKS, usage_extra={"cost": 0.0123})
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
    assert translator.usage == Usage(input_tokens=21, output_tokens=9)
    assert translator.finish_reason == "stop"
    complete = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world!"},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    expected = chat_response_to_responses(
        complete, response_id=RESPONSE_ID, model="qwen/qwen3-8b", created_at=CREATED, request={}, clock=clock
    )
    expected["usage"]["cost"] = 0.0123
    assert final == expected


def test_text_deltas_leave_as_soon_as_their_chunk_arrives() -> None:
    translator = ChatStreamToResponses(response_id=RESPONSE_ID, model="m", created_at=CREATED, request={})
    translator.start()
    assert decode(translator.feed(TEXT_CHUNKS[0])) == []  # role-only chunk: nothing to say yet
    first = decode(translator.feed(TEXT_CHUNKS[1]))
    assert [e["type"] for e in first] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert first[-1]["delta"] == "Hel"


def tool_chunk(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


def test_tool_call_arguments_split_across_chunks_stream_as_deltas() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None}),
        tool_chunk(0, call_id="call_8Kq2Vb1Xy3Zw", name="get_weather"),
        tool_chunk(0, arguments='{"ci'),
        tool_chunk(0, arguments='ty": "Pa'),
        tool_chunk(0, arguments='ris"}'),
        chunk({}, finish="tool_calls"),
        chunk(usage=USAGE),
    ]
    events, _ = run_stream(chunks, request={"tools": [WEATHER_TOOL]})
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
    chunks = [
        chunk({"role": "assistant"}),
        tool_chunk(0, call_id="call_paris", name="get_weather"),
        tool_chunk(0, arguments='{"city":'),
        tool_chunk(1, call_id="call_rome", name="get_weather"),
        tool_chunk(1, arguments='{"city":"Rome"}'),
        tool_chunk(0, arguments='"Paris"}'),
        chunk({}, finish="tool_calls", usage=USAGE),
    ]
    events, _ = run_stream(chunks)
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


def test_ollama_parallel_calls_at_one_index_are_told_apart_by_id() -> None:
    def whole_call(call_id: str, name: str, arguments: str) -> dict:
        call = {
            "id": call_id,
            "index": 0,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return chunk({"role": "assistant", "content": "", "tool_calls": [call]})

    chunks = [
        whole_call("call_a1", "get_weather", '{"city":"Paris"}'),
        whole_call("call_b2", "get_time", "{}"),
        chunk({"role": "assistant", "content": ""}, finish="tool_calls"),
    ]
    events, _ = run_stream(chunks)
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == [0, 1]
    output = events[-1]["response"]["output"]
    assert [(o["call_id"], o["name"], o["arguments"]) for o in output] == [
        ("call_a1", "get_weather", '{"city":"Paris"}'),
        ("call_b2", "get_time", "{}"),
    ]


def test_arguments_before_the_name_are_held_until_the_item_can_be_announced() -> None:
    chunks = [
        tool_chunk(0, arguments='{"city":'),
        tool_chunk(0, call_id="call_late", name="get_weather", arguments='"Oslo"}'),
        chunk({}, finish="tool_calls"),
    ]
    events, _ = run_stream(chunks)
    assert [e["type"] for e in events[2:6]] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert events[2]["item"]["call_id"] == "call_late"
    assert events[3]["delta"] == '{"city":"Oslo"}'
    assert events[-1]["response"]["output"][0]["arguments"] == '{"city":"Oslo"}'


def test_a_tool_call_whose_name_never_arrives_is_still_closed_at_the_end() -> None:
    events, _ = run_stream(
        [tool_chunk(0, call_id="call_anon", arguments="{}"), chunk({}, finish="tool_calls")]
    )
    assert [e["type"] for e in events[2:6]] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert events[-1]["response"]["output"] == [
        {
            "id": f"fc_{SUFFIX}_0",
            "type": "function_call",
            "status": "completed",
            "arguments": "{}",
            "call_id": "call_anon",
            "name": "",
        }
    ]


def test_text_interleaved_with_a_tool_call_stays_in_one_message() -> None:
    chunks = [
        chunk({"content": "Let me "}),
        tool_chunk(0, call_id="call_x", name="get_time", arguments="{}"),
        chunk({"content": "check."}),
        chunk({}, finish="tool_calls"),
    ]
    events, _ = run_stream(chunks)
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert output[0]["content"][0]["text"] == "Let me check."
    text_deltas = [
        (e["output_index"], e["delta"]) for e in events if e["type"] == "response.output_text.delta"
    ]
    assert text_deltas == [(0, "Let me "), (0, "check.")]
    closes = [(e["type"], e["output_index"]) for e in events if e["type"] == "response.output_item.done"]
    assert closes == [("response.output_item.done", 0), ("response.output_item.done", 1)]


def test_reasoning_content_streams_as_a_reasoning_summary_closed_before_the_answer() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Two plus "}),
        chunk({"reasoning_content": "two is four."}),
        chunk({"content": "4"}),
        chunk({}, finish="stop", usage={**USAGE, "completion_tokens_details": {"reasoning_tokens": 6}}),
    ]
    events, translator = run_stream(chunks)
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
    assert translator.usage is not None and translator.usage.reasoning_tokens == 6


def test_vllm_sending_both_reasoning_fields_is_not_doubled() -> None:
    events, _ = run_stream(
        [chunk({"reasoning": "hmm", "reasoning_content": "hmm"}), chunk({}, finish="stop")]
    )
    assert events[-1]["response"]["output"][0]["summary"][0]["text"] == "hmm"


def test_length_finish_ends_with_response_incomplete() -> None:
    chunks = [chunk({"content": "The quick brown"}), chunk({}, finish="length"), chunk(usage=USAGE)]
    events, translator = run_stream(chunks, request={"max_output_tokens": 3})
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert final["max_output_tokens"] == 3
    assert final["output"][0]["status"] == "incomplete"
    assert translator.finish_reason == "length"


def test_usage_on_the_finish_chunk_is_read() -> None:
    events, translator = run_stream([chunk({"content": "ok"}), chunk({}, finish="stop", usage=USAGE)])
    assert translator.usage == Usage(input_tokens=21, output_tokens=9)
    assert events[-1]["response"]["usage"]["total_tokens"] == 30


def test_stream_without_any_output_or_usage_still_ends_with_a_valid_response() -> None:
    events, translator = run_stream([chunk({"role": "assistant", "content": ""}), chunk({}, finish="stop")])
    assert translator.usage is None
    final = events[-1]["response"]
    assert final["output"][0]["content"] == [
        {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    ]
    assert final["usage"]["input_tokens"] == 0
    Response.model_validate(final)


def test_failure_mid_stream_sends_error_then_response_failed_keeping_partial_text() -> None:
    translator = ChatStreamToResponses(response_id=RESPONSE_ID, model="m", created_at=CREATED, request={})
    frames = translator.start() + translator.feed(chunk({"content": "Partial"}))
    frames += translator.fail(code="server_error", message="upstream reset the connection")
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
    assert translator.feed(chunk({"content": "late"})) == []
    assert translator.finish() == []


def test_gateway_error_codes_outside_openais_enum_fail_the_response_as_server_error() -> None:
    translator = ChatStreamToResponses(response_id=RESPONSE_ID, model="m", created_at=CREATED, request={})
    events = decode(translator.fail(code="provider_error", message="upstream 502"))
    assert events[-2]["code"] == "provider_error"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "upstream 502"}


# --------------------------------------------------------------------------------------------
# The official OpenAI SDK against a server built on the translation
# --------------------------------------------------------------------------------------------

STREAM_SCENARIOS: dict[str, list[dict]] = {
    "text": TEXT_CHUNKS,
    "tools": [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Need the weather tool."}),
        chunk({"content": "Let me check."}),
        tool_chunk(0, call_id="call_8Kq2Vb1Xy3Zw", name="get_weather"),
        tool_chunk(0, arguments='{"city": '),
        tool_chunk(0, arguments='"Paris"}'),
        chunk({}, finish="tool_calls"),
        chunk(usage=USAGE),
    ],
}
COMPLETIONS = {"text": VLLM_REASONING_COMPLETION, "tools": OPENAI_TOOL_CALLS_COMPLETION}


async def responses_endpoint(request: Request) -> HttpResponse:
    body = await request.json()
    try:
        chat_request = responses_request_to_chat(body, upstream_model="upstream")
    except GatewayError as error:
        return HttpResponse(error.openai_json(), status_code=error.status, media_type="application/json")
    request.app.state.chat_requests.append(chat_request)
    scenario = body["model"]
    if not body.get("stream"):
        response = chat_response_to_responses(
            COMPLETIONS[scenario], response_id=RESPONSE_ID, model=scenario, created_at=CREATED, request=body
        )
        response["usage"]["cost"] = 0.0123
        return HttpResponse(orjson.dumps(response), media_type="application/json")
    translator = ChatStreamToResponses(
        response_id=RESPONSE_ID, model=scenario, created_at=CREATED, request=body
    )

    async def frames() -> typing.AsyncIterator[bytes]:
        for frame in translator.start():
            yield frame
        for c in STREAM_SCENARIOS[scenario]:
            for frame in translator.feed(c):
                yield frame
        for frame in translator.finish(usage_extra={"cost": 0.0123}):
            yield frame

    return StreamingResponse(frames(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def sdk_server() -> Iterator[tuple[openai.OpenAI, list[dict]]]:
    app = Starlette(routes=[Route("/v1/responses", responses_endpoint, methods=["POST"])])
    app.state.chat_requests = []
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
        yield client, app.state.chat_requests
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_sdk_reads_a_translated_complete_response(sdk_server: tuple[openai.OpenAI, list[dict]]) -> None:
    client, chat_requests = sdk_server
    response = client.responses.create(model="text", input="What is 2+2?", instructions="Answer briefly.")
    assert chat_requests[-1]["messages"][0] == {"role": "system", "content": "Answer briefly."}
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
    sdk_server: tuple[openai.OpenAI, list[dict]],
) -> None:
    client, chat_requests = sdk_server
    tools: Any = [WEATHER_TOOL]
    with client.responses.create(
        model="tools", input="Weather in Paris?", tools=tools, stream=True
    ) as stream:
        events = list(stream)
    assert chat_requests[-1]["stream_options"] == {"include_usage": True}
    assert chat_requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    names = [type(event).__name__ for event in events]
    assert names == [EVENT_CLASSES[event.type].__name__ for event in events]
    assert "ResponseTextDeltaEvent" in names
    assert "ResponseFunctionCallArgumentsDeltaEvent" in names
    assert "ResponseReasoningSummaryTextDeltaEvent" in names
    assert names[-1] == "ResponseCompletedEvent"
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_sdk_stream_helper_assembles_the_final_response(sdk_server: tuple[openai.OpenAI, list[dict]]) -> None:
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


def test_sdk_sees_a_refused_parameter_as_a_bad_request(sdk_server: tuple[openai.OpenAI, list[dict]]) -> None:
    client, _ = sdk_server
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="text", input="hi", previous_response_id="resp_earlier")
    assert caught.value.status_code == 400
    assert "previous_response_id" in caught.value.message
