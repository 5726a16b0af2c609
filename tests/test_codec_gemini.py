"""The Gemini codec (provider side): canonical ⇄ ``generateContent`` bodies and ``alt=sse`` streams.

Golden payloads under ``tests/golden/gemini/`` are written in the real wire format (camelCase,
``usageMetadata`` cumulative on every stream chunk, CRLF SSE framing) and are checked against
the ``google-genai`` SDK's own models; the last tests run the codec against the fake Gemini
server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import types

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.canonical import (
    Finish,
    FinishReason,
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
from aistats_gateway.formats.base import Codec, ResponseContext, Target
from aistats_gateway.formats.gemini import CODEC, NO_SURFACE_MESSAGE
from aistats_gateway.formats.gemini.response import FINISH_REASONS, usage_from_metadata
from aistats_gateway.formats.sse import SSEDecoder
from aistats_gateway.pipeline.upstream_errors import provider_message
from tests.fakes.gemini_server import Behaviour, FakeGemini, FakeGeminiServer

GOLDEN = Path(__file__).parent / "golden" / "gemini"
TARGET = Target(provider="google-ai-studio", model="gemini-2.5-flash")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
PARIS_SIGNATURE = "ApoU4odSKPRDkusmb0IzprRHokhhqUuHkRZD1+DBvasKCfeF+3gv1XU0MbLcMB3Y"
TEXT_SIGNATURE = "FZrHZUPkfEHPjRf7oCBuhdJCzXs1boUXVIUVQR4+w1Mh+cz9sDKtIWeMp2sTvjum"
GENERATED_ID = re.compile(r"^call_[0-9a-f]{16}$")
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "unit": {"$ref": "#/$defs/unit"},
        "days": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
    "$defs": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
}
WEATHER = Tool(name="get_weather", description="Current weather for a city", parameters=WEATHER_SCHEMA)


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name).read_text())


def golden_events(name: str, piece: int = 0) -> list[StreamEvent]:
    """Decode a golden ``.sse`` file through the real SSE decoder (bytes fed ``piece`` at a time)."""
    raw = (GOLDEN / name).read_bytes()
    return decode_stream(raw, piece)


def decode_stream(raw: bytes, piece: int = 0) -> list[StreamEvent]:
    sse, decoder = SSEDecoder(), CODEC.stream_decoder()
    events: list[StreamEvent] = []
    pieces = [raw[i : i + piece] for i in range(0, len(raw), piece)] if piece else [raw]
    for chunk in pieces:
        for event in sse.feed(chunk):
            events += decoder.feed(event)
    for event in sse.flush():
        events += decoder.feed(event)
    return events


def user(*parts: Any) -> Message:
    return Message(role="user", parts=[TextPart(p) if isinstance(p, str) else p for p in parts])


def assistant(*parts: Any) -> Message:
    return Message(role="assistant", parts=[TextPart(p) if isinstance(p, str) else p for p in parts])


def request(*messages: Message, **fields: Any) -> Request:
    return Request(model="google/gemini-2.5-flash", messages=list(messages), **fields)


def encode(*messages: Message, **fields: Any) -> dict[str, Any]:
    return CODEC.encode_request(request(*messages, **fields), TARGET)


def refusal(*messages: Message, **fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        encode(*(messages or (user("hi"),)), **fields)
    assert caught.value.reason == "validation_error" and caught.value.status == 400
    return caught.value


def sdk_check(body: dict[str, Any]) -> None:
    """Each piece of the body parses in the google-genai SDK's models (which forbid unknown fields)."""
    for content in body["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    for tool in body.get("tools", []):
        types.Tool.model_validate(tool)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


# --- the codec object -----------------------------------------------------------------------------


def test_codec_is_named_gemini_and_fits_the_codec_protocol() -> None:
    codec: Codec = CODEC
    assert codec.name == "gemini"


def test_client_side_methods_refuse_with_a_400_pointing_at_the_real_surfaces() -> None:
    ctx = ResponseContext(generation_id="gen_01JABCDEFGHJKMNPQRSTVWXYZ0", model="m", created=0, request={})
    calls = [
        lambda: CODEC.decode_request({"contents": []}),
        lambda: CODEC.encode_response(CODEC.decode_response(golden("response_text.json")), ctx, 0.0),
        lambda: CODEC.stream_encoder(ctx),
    ]
    for call in calls:
        with pytest.raises(GatewayError) as caught:
            call()
        assert (caught.value.reason, caught.value.status) == ("validation_error", 400)
        assert caught.value.message == NO_SURFACE_MESSAGE
        assert "/v1/chat/completions" in NO_SURFACE_MESSAGE and "/v1/messages" in NO_SURFACE_MESSAGE


def test_gemini_error_bodies_need_no_codec_helper_the_shared_reader_finds_the_message() -> None:
    body = {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}
    assert provider_message(json.dumps(body).encode()) == "API key not valid."


# --- encode_request -------------------------------------------------------------------------------


def test_text_request_is_one_user_content_with_the_system_instruction_and_no_model_in_the_body() -> None:
    body = encode(user("Hello"), system=[TextPart("Be brief.")], user="end-user-42", stream=True)
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }
    sdk_check(body)


def test_multi_turn_conversation_with_parallel_calls_results_images_and_signatures_matches_golden() -> None:
    paris = ToolCallPart(id="call_paris", name="get_weather", arguments='{"city":"Paris","unit":"celsius"}')
    london = ToolCallPart(
        id="call_london", name="get_weather", arguments='{"city":"London","unit":"celsius"}'
    )
    body = encode(
        user(
            "What is the weather in Paris and London? Here is my sketch of the sky.",
            ImagePart(data=PNG, media_type="image/png"),
        ),
        assistant(ThinkingPart("**Checking two cities**", signature=PARIS_SIGNATURE), paris, london),
        user(
            ToolResultPart(call_id="call_paris", content=[TextPart('{"temperature": 18, "sky": "sunny"}')]),
            ToolResultPart(
                call_id="call_london",
                content=[TextPart("London weather service timed out")],
                is_error=True,
                name="get_weather",
            ),
        ),
        user("And what about tomorrow?"),
        assistant(
            ThinkingPart("**Looking ahead**"),
            "Tomorrow looks sunny in Paris; London is unknown.",
            ThinkingPart("", signature=TEXT_SIGNATURE),
        ),
        user("Compare with this chart.", ImagePart(url="gs://weather-demo/charts/paris.png")),
        system=[TextPart("You are a weather assistant."), TextPart("Answer in one sentence.")],
        tools=[WEATHER, Tool(name="get_time")],
        tool_choice=ToolChoice("auto"),
        parallel_tool_calls=True,
        max_output_tokens=1024,
        temperature=0.4,
        top_p=0.9,
        top_k=40,
        stop=["\n\nUser:"],
        reasoning=Reasoning(effort="low"),
        extras={"seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.25, "n": 1, "logprobs": False},
    )
    assert body == golden("request_multi_turn_tools.json")
    sdk_check(body)


def test_tool_json_schema_is_sent_intact_as_parameters_json_schema() -> None:
    body = encode(user("weather?"), tools=[WEATHER])
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == WEATHER_SCHEMA
    assert "parameters" not in declaration
    assert declaration["parametersJsonSchema"]["$defs"] == WEATHER_SCHEMA["$defs"]


def test_consecutive_same_role_messages_merge_and_empty_ones_vanish() -> None:
    body = encode(
        user("one"),
        user("two"),
        assistant(ThinkingPart("only a thought, no signature")),
        user("three"),
        assistant("", "answer"),
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}, {"text": "three"}]},
        {"role": "model", "parts": [{"text": "answer"}]},
    ]


def test_thinking_text_is_dropped_from_history_and_a_lone_signature_goes_on_the_next_part() -> None:
    body = encode(user("q"), assistant(ThinkingPart("step by step", signature="c2ln"), "final answer"))
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"text": "final answer", "thoughtSignature": "c2ln"}],
    }


def test_signature_before_a_call_goes_on_that_call_not_on_the_text_before_it() -> None:
    call = ToolCallPart(id="c1", name="get_time", arguments="")
    body = encode(user("q"), assistant("Let me check.", ThinkingPart("", signature="c2ln"), call))
    assert body["contents"][1]["parts"] == [
        {"text": "Let me check."},
        {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "c2ln"},
    ]


def test_redacted_and_unsigned_thinking_leave_no_trace() -> None:
    body = encode(user("q"), assistant(ThinkingPart("", redacted_data="opaque"), ThinkingPart("plan"), "a"))
    assert body["contents"][1]["parts"] == [{"text": "a"}]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (ImagePart(data=PNG, media_type="image/png"), {"inlineData": {"mimeType": "image/png", "data": PNG}}),
        (
            ImagePart(url=f"data:image/png;base64,{PNG}"),
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
        ),
        (
            ImagePart(url=f"data:image/png;name=dot.png;base64,{PNG}"),
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
        ),
        (
            ImagePart(url="gs://bucket/photo.jpg"),
            {"fileData": {"fileUri": "gs://bucket/photo.jpg", "mimeType": "image/jpeg"}},
        ),
        (
            ImagePart(
                url="https://generativelanguage.googleapis.com/v1beta/files/abc123", media_type="image/webp"
            ),
            {
                "fileData": {
                    "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123",
                    "mimeType": "image/webp",
                }
            },
        ),
    ],
)
def test_images_become_inline_data_or_file_data(image: ImagePart, expected: dict[str, Any]) -> None:
    body = encode(user("what is this?", image))
    assert body["contents"][0]["parts"][1] == expected
    sdk_check(body)


def test_http_image_url_is_refused_because_gemini_needs_inline_bytes() -> None:
    error = refusal(user("what is this?", ImagePart(url="https://example.com/cat.png")))
    assert error.param == "image_url"
    assert "google-ai-studio" in error.message and "does not fetch URLs" in error.message


def test_malformed_data_url_is_refused() -> None:
    assert refusal(user(ImagePart(url="data:image/png,notbase64"))).param == "image_url"
    assert refusal(user(ImagePart(url="data:image/png;base64,@@@@"))).param == "image_url"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("none"), {"mode": "NONE"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice_maps_to_function_calling_config(choice: ToolChoice, expected: dict[str, Any]) -> None:
    body = encode(user("q"), tools=[WEATHER, Tool(name="get_time")], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    sdk_check(body)


def test_tool_choice_without_tools_is_dropped_when_harmless_and_refused_when_it_forces_a_call() -> None:
    assert "toolConfig" not in encode(user("q"), tool_choice=ToolChoice("none"))
    assert refusal(tool_choice=ToolChoice("required")).param == "tool_choice"
    assert refusal(tools=[WEATHER], tool_choice=ToolChoice("tool", "nope")).param == "tool_choice"


def test_parallel_tool_calls_false_is_refused_because_gemini_cannot_disable_them() -> None:
    error = refusal(tools=[WEATHER], parallel_tool_calls=False)
    assert error.param == "parallel_tool_calls"
    assert "google-ai-studio" in error.message and "parallel" in error.message
    assert "tools" not in encode(user("q"), parallel_tool_calls=False)
    no_calls = encode(user("q"), tools=[WEATHER], tool_choice=ToolChoice("none"), parallel_tool_calls=False)
    assert no_calls["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_tool_result_name_comes_from_the_result_else_from_the_earlier_call_else_a_400() -> None:
    call = ToolCallPart(id="toolu_1", name="get_weather", arguments='{"city":"Oslo"}')
    body = encode(
        user("q"),
        assistant(call),
        user(ToolResultPart(call_id="toolu_1", content=[TextPart("sunny")])),
    )
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}
    ]
    error = refusal(user(ToolResultPart(call_id="unknown", content=[TextPart("x")])))
    assert error.param == "messages" and "unknown" in error.message


def test_tool_result_images_follow_the_function_response_as_inline_data() -> None:
    result = ToolResultPart(
        call_id="c",
        name="screenshot",
        content=[TextPart("[1, 2]"), ImagePart(data=PNG, media_type="image/png")],
    )
    body = encode(user(result))
    assert body["contents"][0]["parts"] == [
        {"functionResponse": {"name": "screenshot", "response": {"result": [1, 2]}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
    ]
    sdk_check(body)


def test_tool_call_arguments_that_are_not_a_json_object_are_refused() -> None:
    for arguments in ('{"city": ', "[1]"):
        call = ToolCallPart(id="c", name="f", arguments=arguments)
        assert refusal(user("q"), assistant(call)).param == "messages"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (OutputFormat("text"), {}),
        (OutputFormat("json_object"), {"responseMimeType": "application/json"}),
        (
            OutputFormat("json_schema", name="weather", schema=WEATHER_SCHEMA, strict=True),
            {"responseMimeType": "application/json", "responseJsonSchema": WEATHER_SCHEMA},
        ),
    ],
)
def test_structured_output_sets_mime_type_and_json_schema(
    output: OutputFormat, expected: dict[str, Any]
) -> None:
    body = encode(user("q"), output_format=output)
    assert body.get("generationConfig", {}) == expected
    sdk_check(body)


@pytest.mark.parametrize(
    ("reasoning", "budget", "include"),
    [
        (Reasoning(effort="minimal"), 1024, True),
        (Reasoning(effort="low"), 2048, True),
        (Reasoning(effort="medium"), 8192, True),
        (Reasoning(effort="high"), 24576, True),
        (Reasoning(budget_tokens=5000), 5000, True),
        (Reasoning(budget_tokens=0, include_thoughts=False), 0, False),
    ],
)
def test_reasoning_becomes_a_thinking_budget(reasoning: Reasoning, budget: int, include: bool) -> None:
    body = encode(user("q"), reasoning=reasoning)
    assert body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": budget,
        "includeThoughts": include,
    }
    sdk_check(body)


def test_supported_extras_map_into_generation_config_and_neutral_or_null_ones_ask_nothing() -> None:
    body = encode(
        user("q"),
        extras={
            "seed": 3,
            "presence_penalty": -0.5,
            "frequency_penalty": 1.0,
            "n": 1,
            "top_logprobs": 0,
            "x": None,
        },
    )
    assert body["generationConfig"] == {"seed": 3, "presencePenalty": -0.5, "frequencyPenalty": 1.0}
    sdk_check(body)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 5),
        ("logit_bias", {"50256": -100}),
        ("service_tier", "flex"),
    ],
)
def test_extras_gemini_cannot_honour_are_refused_naming_param_and_provider(param: str, value: Any) -> None:
    error = refusal(extras={param: value})
    assert error.param == param
    assert error.message.startswith(f"'{param}' is not supported by provider 'google-ai-studio' (gemini)")
    assert error.code == "unsupported_parameter"


# --- decode_response ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("response_*.json")))
def test_golden_responses_are_real_gemini_shapes(name: str) -> None:
    types.GenerateContentResponse.model_validate(golden(name))


def test_text_response_decodes_to_text_stop_usage_id_and_model() -> None:
    response = CODEC.decode_response(golden("response_text.json"))
    assert response.parts == [TextPart("The capital of France is Paris.")]
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=14, output_tokens=7)
    assert (response.id, response.model) == ("6mcIaJ3hNpPs7M8P2JGBqQk", "gemini-2.0-flash")


def test_thinking_and_parallel_calls_decode_with_signature_generated_ids_and_tool_calls_finish() -> None:
    response = CODEC.decode_response(golden("response_thinking_parallel_calls.json"))
    thinking, paris, london = response.parts
    assert isinstance(thinking, ThinkingPart) and thinking.text.startswith("**Checking two cities**")
    assert thinking.signature == PARIS_SIGNATURE
    assert isinstance(paris, ToolCallPart) and isinstance(london, ToolCallPart)
    assert (paris.name, paris.arguments) == ("get_weather", '{"city":"Paris","unit":"celsius"}')
    assert london.arguments == '{"city":"London","unit":"celsius"}'
    assert GENERATED_ID.match(paris.id) and GENERATED_ID.match(london.id) and paris.id != london.id
    assert response.finish_reason == "tool_calls"
    # promptTokenCount includes the cached 2048; output = candidates 36 + thoughts 154.
    assert response.usage == Usage(
        input_tokens=2112, cached_input_tokens=2048, output_tokens=190, reasoning_tokens=154
    )


def test_signature_on_a_text_part_becomes_an_empty_thinking_part_after_the_text() -> None:
    response = CODEC.decode_response(golden("response_thinking_text_signature.json"))
    assert [type(p).__name__ for p in response.parts] == ["ThinkingPart", "TextPart", "ThinkingPart"]
    assert response.parts[1] == TextPart("Water boils at 100 °C at sea level.")
    assert response.parts[2] == ThinkingPart("", signature=TEXT_SIGNATURE)
    assert response.usage is not None and response.usage.output_tokens == 12 + 58


@pytest.mark.parametrize(
    "name", ["response_thinking_parallel_calls.json", "response_thinking_text_signature.json"]
)
def test_decoded_answer_sent_back_as_history_carries_each_signature_on_its_original_part(name: str) -> None:
    payload = golden(name)
    original = payload["candidates"][0]["content"]["parts"]
    history = encode(user("q"), assistant(*CODEC.decode_response(payload).parts))["contents"][1]["parts"]
    assert history == [p for p in original if not p.get("thought")]


def test_function_call_id_from_gemini_is_kept_and_key_order_and_unicode_survive() -> None:
    payload = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"id": "fc-7", "name": "f", "args": {"z": "é", "a": [1, {}]}}}
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    response = CODEC.decode_response(payload)
    assert response.parts == [ToolCallPart(id="fc-7", name="f", arguments='{"z":"é","a":[1,{}]}')]
    assert response.usage is None


def _with_finish(native: str, parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": native, "index": 0}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    return {"candidates": [candidate]}


@pytest.mark.parametrize(
    ("native", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("OTHER", "stop"),
        ("LANGUAGE", "stop"),
        ("SOMETHING_NEW", "stop"),
    ],
)
def test_finish_reasons_map_to_canonical(native: str, expected: str) -> None:
    assert CODEC.decode_response(_with_finish(native, [{"text": "x"}])).finish_reason == expected


def test_every_sdk_finish_reason_is_mapped() -> None:
    assert {r.value for r in types.FinishReason} <= set(FINISH_REASONS)


def test_safety_stop_with_no_content_and_max_tokens_decode_from_golden() -> None:
    safety = CODEC.decode_response(golden("response_safety.json"))
    assert (safety.parts, safety.finish_reason) == ([], "content_filter")
    truncated = CODEC.decode_response(golden("response_max_tokens.json"))
    assert truncated.finish_reason == "length"
    # toolUsePromptTokenCount (5) is input too.
    assert truncated.usage == Usage(input_tokens=13, output_tokens=80, reasoning_tokens=64)


def test_blocked_prompt_without_candidates_is_a_content_filter_finish() -> None:
    response = CODEC.decode_response(golden("response_prompt_blocked.json"))
    assert (response.parts, response.finish_reason) == ([], "content_filter")
    assert response.usage == Usage(input_tokens=25)


# --- stream_decoder -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("stream_*.sse")))
def test_golden_stream_chunks_are_real_gemini_shapes(name: str) -> None:
    raw = (GOLDEN / name).read_bytes()
    assert raw.endswith(b"\r\n\r\n") and b"\n\n" not in raw.replace(b"\r\n", b"")  # Google's CRLF framing
    for frame in SSEDecoder().feed(raw):
        chunk = frame.json()
        if "error" not in chunk:
            types.GenerateContentResponse.model_validate(chunk)


def test_text_stream_gives_deltas_usage_when_it_changes_and_one_finish_last() -> None:
    decoder = CODEC.stream_decoder()
    sse = SSEDecoder()
    events: list[StreamEvent] = []
    for frame in sse.feed((GOLDEN / "stream_text.sse").read_bytes()):
        events += decoder.feed(frame)
    assert events == [
        TextDelta("Why"),
        UsageUpdate(Usage(input_tokens=6)),
        TextDelta(" did the scarecrow win an award? Because he was"),
        TextDelta(" outstanding in his field!\n"),
        UsageUpdate(Usage(input_tokens=6, output_tokens=19)),
        Finish("stop"),
    ]
    assert decoder.usage == Usage(input_tokens=6, output_tokens=19)
    assert decoder.finish_reason == "stop"
    assert decoder.output_chars == len(
        "Why did the scarecrow win an award? Because he was outstanding in his field!\n"
    )


def test_stream_decodes_the_same_when_bytes_arrive_in_small_pieces() -> None:
    for name in ("stream_text.sse", "stream_thinking_parallel_calls.sse"):
        whole = golden_events(name)
        pieces = golden_events(name, piece=7)
        # Generated call ids differ run to run; everything else must match.
        strip = [e for e in whole if not isinstance(e, ToolCallStart)]
        assert strip == [e for e in pieces if not isinstance(e, ToolCallStart)]


def test_thinking_and_parallel_call_stream_decodes_in_order_with_a_tool_calls_finish() -> None:
    events = golden_events("stream_thinking_parallel_calls.sse")
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_weather")]
    assert all(GENERATED_ID.match(s.id) for s in starts) and starts[0].id != starts[1].id
    assert [e for e in events if not isinstance(e, ToolCallStart)] == [
        ThinkingDelta("**Checking two cities**\n\nI will look up Paris and London."),
        UsageUpdate(Usage(2112, 2048, output_tokens=120, reasoning_tokens=120)),
        ThinkingDelta("\nBoth lookups can run in parallel.\n"),
        UsageUpdate(Usage(2112, 2048, output_tokens=154, reasoning_tokens=154)),
        ThinkingSignature(PARIS_SIGNATURE),
        ToolCallDelta(0, '{"city":"Paris","unit":"celsius"}'),
        ToolCallDelta(1, '{"city":"London","unit":"celsius"}'),
        UsageUpdate(Usage(2112, 2048, output_tokens=190, reasoning_tokens=154)),
        Finish("tool_calls"),
    ]
    # The signature comes before the first call's start, as in the non-stream placement.
    signature_at = next(i for i, e in enumerate(events) if isinstance(e, ThinkingSignature))
    assert events[signature_at + 1] == starts[0]


def test_each_streamed_call_has_exactly_one_argument_delta_holding_the_whole_json() -> None:
    events = golden_events("stream_thinking_parallel_calls.sse")
    for index in (0, 1):
        deltas = [e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == index]
        assert len(deltas) == 1 and json.loads(deltas[0])["unit"] == "celsius"


def test_stream_text_signature_on_the_final_empty_chunk_comes_after_the_text() -> None:
    events = [
        e for e in golden_events("stream_thinking_text_signature.sse") if not isinstance(e, UsageUpdate)
    ]
    assert events == [
        ThinkingDelta(
            "**Recalling the boiling point**\n\nAt sea level water boils at 100 degrees Celsius.\n"
        ),
        TextDelta("Water boils at 100 °C"),
        TextDelta(" at sea level."),
        ThinkingSignature(TEXT_SIGNATURE),
        Finish("stop"),
    ]


def test_in_stream_error_chunk_raises_provider_error_with_googles_message() -> None:
    sse, decoder = SSEDecoder(), CODEC.stream_decoder()
    frames = sse.feed((GOLDEN / "stream_error.sse").read_bytes())
    assert decoder.feed(frames[0])[0] == TextDelta("Here is")
    with pytest.raises(GatewayError) as caught:
        decoder.feed(frames[1])
    assert caught.value.reason == "provider_error"
    assert caught.value.message == "The model is overloaded. Please try again later."


def _frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_with_finish("SAFETY"), "content_filter"),
        (_with_finish("MAX_TOKENS", [{"text": "cut"}]), "length"),
        (_with_finish("MALFORMED_FUNCTION_CALL"), "error"),
        (
            {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}},
            "content_filter",
        ),
    ],
)
def test_stream_finish_reasons(payload: dict[str, Any], reason: FinishReason) -> None:
    events = decode_stream(_frame(payload))
    assert events[-1] == Finish(reason)


def test_stream_without_usage_still_counts_output_characters_for_an_estimate() -> None:
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "abc", "thought": True}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "de"}]}}]},
        _with_finish("STOP", [{"functionCall": {"name": "f", "args": {"k": 1}}}]),
    ]
    decoder = CODEC.stream_decoder()
    sse = SSEDecoder()
    for chunk in chunks:
        for frame in sse.feed(_frame(chunk)):
            decoder.feed(frame)
    assert decoder.usage is None
    assert decoder.output_chars == len("abc") + len("de") + len('{"k":1}')
    assert decoder.finish_reason == "tool_calls"


# --- against the fake Gemini server ---------------------------------------------------------------

KEY = "gm-codec-test"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(fake=FakeGemini(api_key=KEY)) as running:
        yield running


def _post(server: FakeGeminiServer, method: str, body: dict[str, Any]) -> httpx.Response:
    url = f"{server.base_url}/v1beta/models/{TARGET.model}:{method}"
    response = httpx.post(url, json=body, headers={"x-goog-api-key": KEY}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_fake_server_answers_an_encoded_request_and_the_answer_decodes(server: FakeGeminiServer) -> None:
    body = encode(user("Reply with: bonjour"), system=[TextPart("Be French.")])
    response = CODEC.decode_response(_post(server, "generateContent", body).json())
    assert response.parts == [TextPart("bonjour")]
    assert response.finish_reason == "stop"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert server.fake.requests[-1].body == body


def test_fake_server_tool_round_trip_with_thinking_and_structured_output(server: FakeGeminiServer) -> None:
    server.fake.enqueue(
        Behaviour(thinking="plan it", tool_calls=[{"name": "get_weather", "input": {"city": "Oslo"}}])
    )
    ask = [user("weather in Oslo?")]
    first = CODEC.decode_response(
        _post(
            server, "generateContent", encode(*ask, tools=[WEATHER], reasoning=Reasoning(effort="low"))
        ).json()
    )
    assert first.finish_reason == "tool_calls"
    thinking, call = first.parts
    assert isinstance(thinking, ThinkingPart) and thinking.text == "plan it" and thinking.signature
    assert isinstance(call, ToolCallPart) and call.arguments == '{"city":"Oslo"}'

    history = [
        *ask,
        assistant(*first.parts),
        user(ToolResultPart(call_id=call.id, content=[TextPart("sunny")])),
    ]
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body = encode(*history, tools=[WEATHER], output_format=OutputFormat("json_schema", schema=schema))
    sent_call = body["contents"][1]["parts"][0]
    assert sent_call == {
        "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
        "thoughtSignature": thinking.signature,
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}
    ]
    second = CODEC.decode_response(_post(server, "generateContent", body).json())
    assert second.finish_reason == "stop"
    assert isinstance(second.parts[0], TextPart)
    assert json.loads(second.parts[0].text) == {"answer": "echo: weather in Oslo?"}


def test_fake_server_stream_decodes_to_the_same_answer_as_the_whole_response(
    server: FakeGeminiServer,
) -> None:
    server.fake.enqueue(
        Behaviour(
            thinking="hmm ok",
            text="Sunny and mild",
            tool_calls=[{"name": "get_weather", "arguments": '{"city": "Rome"}'}],
        ),
    )
    body = encode(user("weather?"), tools=[WEATHER], reasoning=Reasoning(effort="minimal"))
    events = decode_stream(_post(server, "streamGenerateContent?alt=sse", body).content, piece=11)
    assert "".join(e.text for e in events if isinstance(e, ThinkingDelta)) == "hmm ok"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Sunny and mild"
    assert [e.arguments for e in events if isinstance(e, ToolCallDelta)] == ['{"city":"Rome"}']
    assert sum(isinstance(e, ThinkingSignature) for e in events) == 1
    assert events[-1] == Finish("tool_calls")
    usage = [e.usage for e in events if isinstance(e, UsageUpdate)][-1]
    assert usage.reasoning_tokens == 2 and usage.output_tokens > usage.reasoning_tokens


def test_usage_metadata_with_malformed_counts_reads_them_as_zero_instead_of_failing_the_reply() -> None:
    usage = usage_from_metadata(
        {
            "promptTokenCount": "many",
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": None,
            "cachedContentTokenCount": -2,
        }
    )
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens, usage.cached_input_tokens) == (
        0,
        4,
        0,
        0,
    )
