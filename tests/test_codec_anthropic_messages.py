"""The Anthropic Messages codec ("messages"), both sides, against real-format payloads.

Golden payloads are in tests/golden/anthropic_messages/. The client-side output is checked with
the official ``anthropic`` SDK's typed models and, end to end, with the SDK calling a tiny server
that answers with the encoder's frames; the provider side is also run against the fake Anthropic
server (tests/fakes/anthropic_server.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx
import pytest
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.canonical import (
    Finish,
    FinishReason,
    ImagePart,
    Message,
    OutputFormat,
    Reasoning,
    ReasoningEffort,
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
from aistats_gateway.canonical import Response as CanonicalResponse
from aistats_gateway.formats.anthropic_messages import CODEC, STRUCTURED_TOOL
from aistats_gateway.formats.base import Codec, ResponseContext, Target
from aistats_gateway.formats.sse import ServerSentEvent, SSEDecoder
from tests.fakes.anthropic_server import Behaviour, FakeAnthropic, FakeAnthropicServer
from tests.fakes.common import ThreadedServer

GOLDEN = Path(__file__).parent / "golden" / "anthropic_messages"
GEN_ID = "gen_01JD8X3Y4Z5A6B7C8D9E0F1G2H"
MSG_ID = "msg_01JD8X3Y4Z5A6B7C8D9E0F1G2H"
TARGET = Target(provider="anthropic", model="claude-sonnet-4-5-20250929", max_output_tokens=8192)
Mode = Literal["auto", "none", "required", "tool"]
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def golden(name: str) -> Any:
    text = (GOLDEN / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def ctx(**overrides: Any) -> ResponseContext:
    values: dict[str, Any] = {
        "generation_id": GEN_ID,
        "model": "anthropic/claude-sonnet-4-5",
        "created": 1_732_600_000,
        "request": {},
    }
    values.update(overrides)
    return ResponseContext(**values)


def request_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    body.update(fields)
    return body


def canonical(**fields: Any) -> Request:
    values: dict[str, Any] = {"model": "anthropic/claude-sonnet-4-5", "messages": [user("Hello")]}
    values.update(fields)
    return Request(**values)


def user(text: str) -> Message:
    return Message(role="user", parts=[TextPart(text)])


def sse_events(frames: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(b"".join(frames))
    assert decoder.flush() == []
    return events


def assemble(frames: list[bytes]) -> dict[str, Any]:
    """Rebuild the message a client sees, asserting Anthropic's strict event order on the way:
    message_start first, blocks opened in index order one at a time, deltas only to the open
    block, everything closed before message_delta, message_stop last. Every event must parse in
    the SDK's event union."""
    events = sse_events(frames)
    names = [event.event for event in events]
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    message: dict[str, Any] = {}
    open_index: int | None = None
    partial: dict[int, str] = {}
    for event in events:
        data = event.json()
        assert data["type"] == event.event
        if event.event != "ping":
            EVENT_ADAPTER.validate_python(data)
        if data["type"] == "message_start":
            message = data["message"]
        elif data["type"] == "content_block_start":
            assert open_index is None and data["index"] == len(message["content"])
            open_index = data["index"]
            message["content"].append(dict(data["content_block"]))
        elif data["type"] == "content_block_delta":
            assert open_index is not None and data["index"] == open_index
            block, delta = message["content"][open_index], data["delta"]
            field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
            if delta["type"] == "input_json_delta":
                partial[open_index] = partial.get(open_index, "") + delta["partial_json"]
            else:
                block[field[delta["type"]]] += delta[field[delta["type"]]]
        elif data["type"] == "content_block_stop":
            assert data["index"] == open_index
            if open_index in partial:
                block = message["content"][open_index]
                block["partial_json"] = partial[open_index]
                try:
                    block["input"] = json.loads(partial[open_index])
                except ValueError:
                    pass  # a truncated call (finish "length") keeps its raw fragments
            open_index = None
        elif data["type"] == "message_delta":
            assert open_index is None
            message.update(data["delta"])
            message["usage"] = data["usage"]
    return message


def run_stream(events: list[StreamEvent], usage: Usage | None = None, cost: float = 0.0) -> list[bytes]:
    encoder = CODEC.stream_encoder(ctx())
    frames = encoder.start()
    for event in events:
        frames.extend(encoder.feed(event))
    frames.extend(encoder.finish(usage or Usage(), cost))
    return frames


def decode_stream(text: str) -> tuple[list[StreamEvent], Any]:
    decoder = CODEC.stream_decoder()
    sse = SSEDecoder()
    out: list[StreamEvent] = []
    for event in sse.feed(text.encode()) + sse.flush():
        out.extend(decoder.feed(event))
    return out, decoder


def test_codec_satisfies_the_protocol_and_is_named_messages() -> None:
    codec: Codec = CODEC
    assert codec.name == "messages"


# =============================================================================================
# Client side: decode_request
# =============================================================================================


def test_decode_full_request_maps_every_field_of_a_real_messages_body() -> None:
    request = CODEC.decode_request(golden("client_request_full.json"))

    assert request.model == "anthropic/claude-sonnet-4-5"
    assert request.max_output_tokens == 16000
    assert request.system == [TextPart("You are a weather assistant."), TextPart("Answer in one sentence.")]
    first, second, third = request.messages
    assert first.role == "user"
    assert first.parts[1] == ImagePart(
        data="iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
        media_type="image/png",
    )
    assert first.parts[2] == ImagePart(
        url="https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
    )
    assert second.role == "assistant"
    assert second.parts == [
        ThinkingPart(
            "Two lookups are needed.", signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds2"
        ),
        ThinkingPart("", redacted_data="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"),
        TextPart("Checking both."),
        ToolCallPart(
            "toolu_01A09q90qw90lq917835lq9",
            "get_weather",
            '{"location":"San Francisco, CA","unit":"celsius"}',
        ),
        ToolCallPart("toolu_01B19r91rx91mr928946mr0", "get_weather", '{"location":"Paris","unit":"celsius"}'),
    ]
    assert third.parts == [
        ToolResultPart("toolu_01A09q90qw90lq917835lq9", [TextPart("15 degrees, foggy")]),
        ToolResultPart("toolu_01B19r91rx91mr928946mr0", [TextPart("weather service timeout")], is_error=True),
        TextPart("Retry Paris if it failed."),
    ]
    (tool,) = request.tools
    assert tool.name == "get_weather" and tool.description == "Get the current weather in a given location"
    assert tool.parameters == golden("client_request_full.json")["tools"][0]["input_schema"]
    assert request.tool_choice == ToolChoice("auto")
    assert request.parallel_tool_calls is False
    assert request.reasoning == Reasoning(budget_tokens=10000)
    assert request.stop == ["\n\nHuman:"]
    assert (request.temperature, request.top_p, request.top_k) == (1.0, 0.99, None)
    assert request.user == "13803d75-b4b5-4c3e-b2a2-6f21399b021b"
    assert request.stream is True
    assert request.extras == {}


def test_decode_string_system_and_string_content() -> None:
    request = CODEC.decode_request(request_body(system="Be brief.", top_k=5))
    assert request.system == [TextPart("Be brief.")]
    assert request.messages == [user("Hello")]
    assert request.top_k == 5 and request.stream is False


def test_missing_max_tokens_is_a_400_naming_max_tokens_like_anthropic() -> None:
    body = request_body()
    del body["max_tokens"]
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(body)
    assert (caught.value.status, caught.value.param) == (400, "max_tokens")


@pytest.mark.parametrize(
    ("wire", "mode", "name"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "tool", "name": "get_weather"}, "tool", "get_weather"),
        ({"type": "none"}, "none", None),
    ],
)
def test_tool_choice_types_map_to_canonical_modes(wire: dict[str, Any], mode: Mode, name: str | None) -> None:
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    request = CODEC.decode_request(request_body(tools=tools, tool_choice=wire))
    assert request.tool_choice == ToolChoice(mode, name)
    assert request.parallel_tool_calls is None


@pytest.mark.parametrize("server_tool", ["web_search_20250305", "bash_20250124", "computer_20250124"])
def test_server_tools_are_refused_naming_their_type(server_tool: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(request_body(tools=[{"type": server_tool, "name": "x"}]))
    assert caught.value.status == 400 and caught.value.param == "tools"
    assert server_tool in caught.value.message


def test_document_blocks_are_refused() -> None:
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}}
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(request_body(messages=[{"role": "user", "content": [document]}]))
    assert caught.value.param == "messages" and "document" in caught.value.message


@pytest.mark.parametrize("param", ["container", "mcp_servers", "context_management"])
def test_parameters_that_cannot_work_through_the_gateway_are_refused(param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(request_body(**{param: {"id": "x"}}))
    assert (caught.value.status, caught.value.param) == (400, param)


def test_unknown_parameters_are_refused_like_the_real_api() -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(request_body(frequency_penalty=0.5))
    assert caught.value.param == "frequency_penalty"


def test_service_tier_and_effort_go_to_extras_and_cache_hints_are_ignored() -> None:
    request = CODEC.decode_request(
        request_body(
            service_tier="standard_only",
            output_config={"effort": "low"},
            cache_control={"type": "ephemeral"},
        )
    )
    assert request.extras == {"service_tier": "standard_only", "output_config.effort": "low"}


def test_thinking_modes_map_to_reasoning() -> None:
    enabled = CODEC.decode_request(
        request_body(
            max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048, "display": "omitted"}
        )
    )
    assert enabled.reasoning == Reasoning(budget_tokens=2048, include_thoughts=False)
    assert CODEC.decode_request(request_body(thinking={"type": "disabled"})).reasoning is None
    assert CODEC.decode_request(request_body(thinking={"type": "adaptive"})).reasoning == Reasoning()


@pytest.mark.parametrize(
    ("max_tokens", "budget", "param"),
    [(4096, 512, "thinking.budget_tokens"), (2048, 2048, "max_tokens")],
)
def test_thinking_budget_rules_of_the_real_api(max_tokens: int, budget: int, param: str) -> None:
    body = request_body(max_tokens=max_tokens, thinking={"type": "enabled", "budget_tokens": budget})
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(body)
    assert caught.value.param == param


def test_output_config_format_is_structured_output() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    request = CODEC.decode_request(
        request_body(output_config={"format": {"type": "json_schema", "schema": schema}})
    )
    assert request.output_format == OutputFormat(type="json_schema", schema=schema)


def test_data_url_image_source_is_decoded_to_inline_base64() -> None:
    block = {"type": "image", "source": {"type": "url", "url": "data:image/gif;base64,R0lGODlhAQABAAAAACw="}}
    request = CODEC.decode_request(request_body(messages=[{"role": "user", "content": [block]}]))
    assert request.messages[0].parts == [ImagePart(data="R0lGODlhAQABAAAAACw=", media_type="image/gif")]


# =============================================================================================
# Client side: encode_response
# =============================================================================================

ANSWER = CanonicalResponse(
    parts=[
        ThinkingPart("Let me think.", signature="sig-abc"),
        TextPart("Calling the tool."),
        ToolCallPart("call_9f8e", "get_weather", '{"city":"Zürich","days":[1,2]}'),
        ToolCallPart("functions.lookup:1", "lookup", ""),
    ],
    finish_reason="tool_calls",
    usage=Usage(
        input_tokens=5000,
        cached_input_tokens=3000,
        cache_write_tokens=500,
        output_tokens=300,
        reasoning_tokens=120,
    ),
)


def test_encode_response_is_a_valid_sdk_message_with_blocks_in_order_and_uncached_input() -> None:
    body = CODEC.encode_response(ANSWER, ctx(), 0.0123)

    parsed = SDKMessage.model_validate(body)
    assert parsed.id == MSG_ID and parsed.model == "anthropic/claude-sonnet-4-5"
    assert [block.type for block in parsed.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert body["content"][0] == {"type": "thinking", "thinking": "Let me think.", "signature": "sig-abc"}
    assert body["content"][1] == {"type": "text", "text": "Calling the tool."}
    assert body["content"][2] == {
        "type": "tool_use",
        "id": "call_9f8e",
        "name": "get_weather",
        "input": {"city": "Zürich", "days": [1, 2]},
    }
    assert body["content"][3]["input"] == {}
    assert body["content"][3]["id"].startswith("toolu_functions_lookup_1_")
    assert (parsed.stop_reason, parsed.stop_sequence) == ("tool_use", None)
    assert body["usage"] == {
        "input_tokens": 1500,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 3000,
        "output_tokens": 300,
        "output_tokens_details": {"thinking_tokens": 120},
        "cost": 0.0123,
    }


def test_encode_response_keeps_the_text_of_a_plain_answer_and_empty_signature_when_none() -> None:
    response = CanonicalResponse(
        parts=[ThinkingPart("hmm"), TextPart("Hello there!")], finish_reason="stop", usage=Usage(10, 0, 3)
    )
    body = CODEC.encode_response(response, ctx(), 0.0)
    assert body["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Hello there!"},
    ]
    assert SDKMessage.model_validate(body).content[1].text == "Hello there!"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("stop_sequence", "stop_sequence"),
        ("error", "end_turn"),
    ],
)
def test_finish_reasons_map_to_anthropic_stop_reasons(finish: FinishReason, stop_reason: str) -> None:
    response = CanonicalResponse(parts=[TextPart("x")], finish_reason=finish, stop_sequence="END")
    body = CODEC.encode_response(response, ctx(), 0.0)
    assert body["stop_reason"] == stop_reason
    assert body["stop_sequence"] == ("END" if finish == "stop_sequence" else None)


def test_tool_arguments_that_are_not_a_json_object_are_a_provider_error_naming_the_tool() -> None:
    response = CanonicalResponse(
        parts=[ToolCallPart("call_1", "get_weather", '{"city": ')], finish_reason="tool_calls"
    )
    with pytest.raises(GatewayError) as caught:
        CODEC.encode_response(response, ctx(), 0.0)
    assert caught.value.reason == "provider_error" and "get_weather" in caught.value.message


# =============================================================================================
# Client side: stream encoder
# =============================================================================================


def test_stream_of_text_has_the_exact_anthropic_event_sequence() -> None:
    frames = run_stream(
        [TextDelta("Hel"), TextDelta("lo"), UsageUpdate(Usage(12, 0, 2)), Finish("stop")],
        usage=Usage(input_tokens=12, output_tokens=2),
        cost=0.00042,
    )
    events = sse_events(frames)
    assert [event.event for event in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0].json()["message"]
    assert (start["id"], start["content"], start["stop_reason"]) == (MSG_ID, [], None)
    assert start["usage"]["input_tokens"] == 0 and start["usage"]["output_tokens"] == 0
    assert events[2].json()["content_block"] == {"type": "text", "text": ""}
    message = assemble(frames)
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
        "cost": 0.00042,
    }


def test_stream_thinking_text_and_tool_calls_become_sequential_blocks() -> None:
    frames = run_stream(
        [
            ThinkingDelta("Need "),
            ThinkingDelta("weather."),
            ThinkingSignature("sig-1"),
            TextDelta("Checking."),
            ToolCallStart(0, "toolu_01abc", "get_weather"),
            ToolCallDelta(0, '{"city":'),
            ToolCallDelta(0, ' "Paris"}'),
            ToolCallStart(1, "call.with:bad/chars", "get_weather"),
            ToolCallDelta(1, '{"city": "Rome"}'),
            Finish("tool_calls"),
        ],
        usage=Usage(input_tokens=2100, cached_input_tokens=2000, output_tokens=50, reasoning_tokens=20),
    )
    message = assemble(frames)
    thinking, text, first, second = message["content"]
    assert thinking == {"type": "thinking", "thinking": "Need weather.", "signature": "sig-1"}
    assert text == {"type": "text", "text": "Checking."}
    assert (first["id"], first["name"], first["input"]) == ("toolu_01abc", "get_weather", {"city": "Paris"})
    assert second["input"] == {"city": "Rome"} and second["id"].startswith("toolu_call_with_bad_chars_")
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 100 and message["usage"]["cache_read_input_tokens"] == 2000
    assert message["usage"]["output_tokens_details"] == {"thinking_tokens": 20}


def test_text_after_a_tool_call_opens_a_new_text_block() -> None:
    message = assemble(
        run_stream(
            [
                TextDelta("Before."),
                ToolCallStart(0, "toolu_1", "get_weather"),
                ToolCallDelta(0, '{"city":"Oslo"}'),
                TextDelta("After."),
                Finish("tool_calls"),
            ]
        )
    )
    assert [block["type"] for block in message["content"]] == ["text", "tool_use", "text"]
    assert message["content"][2]["text"] == "After."


def test_interleaved_tool_arguments_are_never_lost() -> None:
    """Provider interleaves two calls' fragments: the second call waits until the first's JSON is
    complete, then streams; both inputs arrive whole, in strictly sequential blocks."""
    encoder = CODEC.stream_encoder(ctx())
    frames = encoder.start()
    frames += encoder.feed(ToolCallStart(0, "toolu_a", "get_weather"))
    frames += encoder.feed(ToolCallDelta(0, '{"city":'))
    held = encoder.feed(ToolCallStart(1, "toolu_b", "get_time"))
    held += encoder.feed(ToolCallDelta(1, '{"zone":"CET"}'))
    assert held == []  # the first call is incomplete: nothing for the second one yet
    frames += held
    resumed = encoder.feed(ToolCallDelta(0, '"Paris"}'))
    assert [event.event for event in sse_events(resumed)] == [
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
    ]
    frames += resumed
    frames += encoder.feed(Finish("tool_calls"))
    frames += encoder.finish(Usage(), 0.0)
    message = assemble(frames)
    assert [(block["name"], block["input"]) for block in message["content"]] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "CET"}),
    ]


def test_held_events_are_replayed_at_finish_with_each_tool_gathering_its_fragments() -> None:
    """All starts first, then fragments in any order (and text in between): at the end every
    fragment still lands in its own tool block."""
    message = assemble(
        run_stream(
            [
                ToolCallStart(0, "toolu_a", "a"),
                ToolCallStart(1, "toolu_b", "b"),
                ToolCallDelta(1, '{"y":'),
                TextDelta("note"),
                ToolCallDelta(0, '{"x":'),
                ToolCallDelta(1, "2}"),
                Finish("length"),
            ]
        )
    )
    blocks = message["content"]
    assert [block["type"] for block in blocks] == ["tool_use", "tool_use", "text"]
    assert blocks[0]["partial_json"] == '{"x":'  # truncated by max_tokens, but every fragment is there
    assert blocks[1]["input"] == {"y": 2}
    assert blocks[2]["text"] == "note"
    assert message["stop_reason"] == "max_tokens"


def test_stream_stop_sequence_is_reported_in_message_delta() -> None:
    message = assemble(run_stream([TextDelta("a"), Finish("stop_sequence", "END")]))
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


@pytest.mark.parametrize(
    ("reason", "error_type"),
    [
        ("provider_error", "api_error"),
        ("rate_limit_error", "rate_limit_error"),
        ("timeout_error", "timeout_error"),
    ],
)
def test_fail_sends_an_anthropic_error_event(reason: str, error_type: str) -> None:
    encoder = CODEC.stream_encoder(ctx())
    encoder.start()
    encoder.feed(TextDelta("partial"))
    (event,) = sse_events(encoder.fail(reason, "upstream went away"))
    assert event.event == "error"
    assert event.json() == {"type": "error", "error": {"type": error_type, "message": "upstream went away"}}
    assert encoder.finish(Usage(), 0.0) == []


# =============================================================================================
# Client side, end to end with the official SDK
# =============================================================================================


class _ScriptedMessagesServer(ThreadedServer):
    """Answers POST /v1/messages with the codec's encoders and a scripted canonical answer."""

    label = "scripted-messages"

    def __init__(self, events: list[StreamEvent], response: CanonicalResponse, usage: Usage) -> None:
        super().__init__()
        self.events, self.response, self.usage = events, response, usage
        self.bodies: list[dict[str, Any]] = []

    def build(self) -> Starlette:
        async def messages(request: HTTPRequest) -> Response:
            body = await request.json()
            self.bodies.append(body)
            decoded = CODEC.decode_request(body)
            if not decoded.stream:
                return JSONResponse(CODEC.encode_response(self.response, ctx(), 0.001))

            async def frames() -> Any:
                encoder = CODEC.stream_encoder(ctx())
                for frame in encoder.start():
                    yield frame
                for event in self.events:
                    for frame in encoder.feed(event):
                        yield frame
                for frame in encoder.finish(self.usage, 0.001):
                    yield frame

            return StreamingResponse(frames(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


@pytest.fixture
def scripted() -> Iterator[_ScriptedMessagesServer]:
    usage = Usage(input_tokens=900, cached_input_tokens=800, output_tokens=40)
    events: list[StreamEvent] = [
        ThinkingDelta("Plan."),
        ThinkingSignature("sig-z"),
        TextDelta("Sure, "),
        TextDelta("checking."),
        ToolCallStart(0, "toolu_x1", "get_weather"),
        ToolCallDelta(0, '{"ci'),
        ToolCallDelta(0, 'ty": "Lima"}'),
        Finish("tool_calls"),
    ]
    response = CanonicalResponse(parts=[TextPart("Plain answer.")], finish_reason="stop", usage=usage)
    with _ScriptedMessagesServer(events, response, usage) as server:
        yield server


def test_sdk_stream_get_final_message_rebuilds_the_encoded_stream(scripted: _ScriptedMessagesServer) -> None:
    client = anthropic.Anthropic(base_url=scripted.root_url, api_key="x", max_retries=0, timeout=10)
    with (
        client,
        client.messages.stream(
            model="anthropic/claude-sonnet-4-5",
            max_tokens=256,
            messages=[{"role": "user", "content": "Weather in Lima?"}],
            tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        ) as stream,
    ):
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Sure, checking."
    assert final.id == MSG_ID
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature == "sig-z"  # type: ignore[union-attr]
    assert final.content[2].input == {"city": "Lima"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (
        100,
        800,
        40,
    )


def test_sdk_create_parses_the_encoded_message(scripted: _ScriptedMessagesServer) -> None:
    with anthropic.Anthropic(base_url=scripted.root_url, api_key="x", max_retries=0, timeout=10) as client:
        message = client.messages.create(
            model="anthropic/claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
        )
    assert message.content[0].text == "Plain answer."  # type: ignore[union-attr]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.cache_read_input_tokens) == (
        "end_turn",
        100,
        800,
    )
    assert message.usage.model_extra == {"cost": 0.001}


# =============================================================================================
# Provider side: encode_request
# =============================================================================================


def golden_canonical_request() -> Request:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "array", "items": {"type": "integer"}}},
        "required": ["city"],
        "additionalProperties": False,
    }
    return Request(
        model="anthropic/claude-sonnet-4-5",
        system=[TextPart("You are terse.")],
        messages=[
            Message(
                "user",
                [
                    TextPart("Weather in Paris and Tokyo? Here is a map:"),
                    ImagePart(url="https://example.com/map.png", detail="high"),
                    ImagePart(url="data:image/jpeg;base64,/9j/4AAQSkZJRg=="),
                ],
            ),
            Message(
                "assistant",
                [
                    ThinkingPart("unsigned reasoning from another provider"),
                    TextPart(""),
                    ToolCallPart("call_abc123", "get_weather", '{"city":"Paris"}'),
                    ToolCallPart(
                        "functions.get_weather:1", "get_weather", '{"city": "Tokyo", "days": [1, 2]}'
                    ),
                ],
            ),
            Message("user", [ToolResultPart("call_abc123", [TextPart("18C sunny")])]),
            Message("user", [TextPart("Tokyo's result follows.")]),
            Message(
                "user",
                [
                    ToolResultPart(
                        "functions.get_weather:1",
                        [TextPart("25C"), ImagePart(data="iVBORw0KGgo=", media_type="image/png")],
                        is_error=True,
                    ),
                    TextPart("Thanks! Also summarise."),
                ],
            ),
        ],
        tools=[Tool("get_weather", "Weather for a city", schema, strict=True)],
        tool_choice=ToolChoice("required"),
        parallel_tool_calls=False,
        max_output_tokens=1000,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop=["END"],
        user="user-42",
        stream=True,
    )


def test_encode_request_golden_merges_turns_puts_tool_results_first_and_keeps_schemas() -> None:
    assert CODEC.encode_request(golden_canonical_request(), TARGET) == golden(
        "provider_request_expected.json"
    )


def test_max_tokens_defaults_to_the_target_allowance_and_system_blocks_stay_blocks() -> None:
    body = CODEC.encode_request(canonical(system=[TextPart("One."), TextPart("Two.")]), TARGET)
    assert body["max_tokens"] == 8192
    assert body["system"] == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]
    assert "stream" not in body and "tools" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "wire"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("none"), None, {"type": "none"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("tool", "get_weather"), None, {"type": "tool", "name": "get_weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            ToolChoice("tool", "get_weather"),
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice_maps_to_anthropic(
    choice: ToolChoice | None, parallel: bool | None, wire: dict[str, Any]
) -> None:
    body = CODEC.encode_request(
        canonical(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel), TARGET
    )
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER.parameters}
    ]
    assert body["tool_choice"] == wire


def test_structured_output_forces_the_synthetic_tool_with_the_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = CODEC.encode_request(
        canonical(output_format=OutputFormat("json_schema", "count", schema, True)), TARGET
    )
    (tool,) = body["tools"]
    assert tool["name"] == STRUCTURED_TOOL and tool["input_schema"] == schema and tool["strict"] is True
    assert body["tool_choice"] == {"type": "tool", "name": STRUCTURED_TOOL}


def test_json_object_output_uses_an_open_object_schema_and_tools_make_the_choice_any() -> None:
    body = CODEC.encode_request(canonical(output_format=OutputFormat("json_object"), tools=[WEATHER]), TARGET)
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", STRUCTURED_TOOL]
    assert body["tools"][1]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(("effort", "budget"), [("low", 2048), ("medium", 8192), ("high", 24576)])
def test_reasoning_effort_becomes_a_thinking_budget_below_max_tokens(
    effort: ReasoningEffort, budget: int
) -> None:
    body = CODEC.encode_request(
        canonical(reasoning=Reasoning(effort=effort), max_output_tokens=32000), TARGET
    )
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == 32000


def test_effort_budget_is_lowered_to_fit_the_allowance_but_max_tokens_is_never_raised() -> None:
    body = CODEC.encode_request(canonical(reasoning=Reasoning(effort="high")), TARGET)
    assert body["max_tokens"] == 8192
    assert body["thinking"]["budget_tokens"] == 8191


def test_explicit_budget_not_below_the_callers_max_tokens_is_a_400_naming_max_tokens() -> None:
    request = canonical(reasoning=Reasoning(budget_tokens=4000), max_output_tokens=4000)
    with pytest.raises(GatewayError) as caught:
        CODEC.encode_request(request, TARGET)
    assert (caught.value.status, caught.value.param) == (400, "max_tokens")


def test_tiny_budgets_are_raised_to_anthropics_minimum_and_omitted_thoughts_are_kept() -> None:
    body = CODEC.encode_request(
        canonical(reasoning=Reasoning(budget_tokens=100, include_thoughts=False)), TARGET
    )
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024, "display": "omitted"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 0.3}, "temperature"),
        ({"top_k": 10}, "top_k"),
        ({"top_p": 0.5}, "top_p"),
        ({"tools": [WEATHER], "tool_choice": ToolChoice("required")}, "tool_choice"),
        ({"output_format": OutputFormat("json_object")}, "reasoning"),
    ],
)
def test_thinking_refuses_what_anthropic_forbids_with_it(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.encode_request(canonical(reasoning=Reasoning(effort="low"), **fields), TARGET)
    assert (caught.value.status, caught.value.param) == (400, param)
    assert "'anthropic'" in caught.value.message


def test_temperature_one_is_allowed_with_thinking() -> None:
    body = CODEC.encode_request(canonical(reasoning=Reasoning(effort="low"), temperature=1.0), TARGET)
    assert body["temperature"] == 1.0


@pytest.mark.parametrize(
    "param", ["n", "logprobs", "seed", "presence_penalty", "frequency_penalty", "logit_bias"]
)
def test_chat_extras_are_refused_naming_param_and_provider(param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.encode_request(canonical(extras={param: 2}), TARGET)
    assert caught.value.param == param
    assert caught.value.message == f"'{param}' is not supported by provider 'anthropic' (messages)"


def test_anthropic_extras_are_passed_on() -> None:
    extras = {"service_tier": "auto", "output_config.effort": "medium", "speed": "fast"}
    body = CODEC.encode_request(canonical(extras=extras), TARGET)
    assert (body["service_tier"], body["output_config"], body["speed"]) == (
        "auto",
        {"effort": "medium"},
        "fast",
    )


def test_signed_and_redacted_thinking_go_back_unsigned_is_dropped() -> None:
    history = Message(
        "assistant",
        [
            ThinkingPart("kept", signature="sig"),
            ThinkingPart("", redacted_data="opaque"),
            ThinkingPart("dropped", signature=""),
            TextPart("Answer."),
        ],
    )
    body = CODEC.encode_request(canonical(messages=[user("Q"), history, user("More")]), TARGET)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "kept", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Answer."},
    ]


def test_non_http_image_urls_are_refused() -> None:
    request = canonical(messages=[Message("user", [ImagePart(url="file:///etc/passwd")])])
    with pytest.raises(GatewayError) as caught:
        CODEC.encode_request(request, TARGET)
    assert caught.value.param == "messages"


# =============================================================================================
# Provider side: decode_response and stream decoder
# =============================================================================================


def test_decode_response_golden_thinking_text_parallel_tools_and_cache_usage() -> None:
    response = CODEC.decode_response(golden("provider_message_thinking_tools.json"))
    assert response.parts == [
        ThinkingPart(
            "The user wants the weather in two cities, so I should call get_weather twice.",
            signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds2",
        ),
        TextPart("I'll check both cities for you."),
        ToolCallPart(
            "toolu_01A09q90qw90lq917835lq9",
            "get_weather",
            '{"location":"San Francisco, CA","unit":"celsius"}',
        ),
        ToolCallPart(
            "toolu_01B19r91rx91mr928946mr0", "get_weather", '{"location":"Zürich","unit":"celsius"}'
        ),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(
        input_tokens=472 + 2048 + 1200,
        cached_input_tokens=2048,
        cache_write_tokens=1200,
        output_tokens=221,
        reasoning_tokens=96,
    )
    assert (response.id, response.model) == ("msg_01Aq9w938a90dw8q", "claude-sonnet-4-5-20250929")


def test_structured_output_tool_comes_back_as_the_answer_text_with_finish_stop() -> None:
    response = CODEC.decode_response(golden("provider_message_structured.json"))
    assert response.parts == [
        TextPart('{"name":"Ada Lovelace","born":1815,"fields":["mathematics","computing"]}')
    ]
    assert response.finish_reason == "stop"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop_sequence"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reasons_map_to_canonical_finish(stop_reason: str, finish: str) -> None:
    body = {"content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason, "stop_sequence": None}
    assert CODEC.decode_response(body).finish_reason == finish


def test_redacted_thinking_is_kept_opaque() -> None:
    body = {"content": [{"type": "redacted_thinking", "data": "EmwKAhgB"}], "stop_reason": "end_turn"}
    assert CODEC.decode_response(body).parts == [ThinkingPart("", redacted_data="EmwKAhgB")]


def test_stream_decoder_golden_thinking_text_and_split_tool_arguments() -> None:
    events, decoder = decode_stream(golden("provider_stream_thinking_tool.sse"))
    opening = Usage(input_tokens=472 + 2048, cached_input_tokens=2048, output_tokens=2)
    final = Usage(input_tokens=472 + 2048, cached_input_tokens=2048, output_tokens=89, reasoning_tokens=12)
    assert events == [
        UsageUpdate(opening),
        ThinkingDelta("I need the weather"),
        ThinkingDelta(" in Paris."),
        ThinkingSignature("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds2"),
        TextDelta("Let me check"),
        TextDelta(" that."),
        ToolCallStart(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        ToolCallDelta(0, '{"location": "Par'),
        ToolCallDelta(0, 'is, France", "unit"'),
        ToolCallDelta(0, ': "celsius"}'),
        UsageUpdate(final),
        Finish("tool_calls"),
    ]
    assert decoder.usage == final and decoder.finish_reason == "tool_calls"
    arguments = '{"location": "Paris, France", "unit": "celsius"}'
    assert decoder.output_chars == len("Let me check that.") + len(arguments)


def test_stream_decoder_turns_the_structured_tool_into_text_and_finish_stop() -> None:
    decoder = CODEC.stream_decoder()
    start: dict[str, Any] = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": STRUCTURED_TOOL, "input": {}},
    }
    events: list[StreamEvent] = []
    wire: list[dict[str, Any]] = [
        start,
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"n":'},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": " 3}"},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    ]
    for data in wire:
        events.extend(decoder.feed(ServerSentEvent(data["type"], json.dumps(data))))
    assert events == [
        TextDelta('{"n":'),
        TextDelta(" 3}"),
        UsageUpdate(Usage(output_tokens=5)),
        Finish("stop"),
    ]


def test_stream_error_event_raises_provider_error_with_the_providers_message() -> None:
    decoder = CODEC.stream_decoder()
    data = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(GatewayError) as caught:
        decoder.feed(ServerSentEvent("error", json.dumps(data)))
    assert (caught.value.reason, caught.value.message) == ("provider_error", "Overloaded")


# =============================================================================================
# Provider side against the fake Anthropic server (real wire format)
# =============================================================================================


@pytest.fixture
def fake() -> Iterator[tuple[FakeAnthropic, FakeAnthropicServer]]:
    state = FakeAnthropic(api_key="sk-ant-test")
    with FakeAnthropicServer(fake=state) as server:
        yield state, server


def _post(server: FakeAnthropicServer, body: dict[str, Any]) -> httpx.Response:
    headers = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{server.base_url}/v1/messages", json=body, headers=headers, timeout=10)


def test_round_trip_through_the_fake_server_non_streamed(
    fake: tuple[FakeAnthropic, FakeAnthropicServer],
) -> None:
    state, server = fake
    state.enqueue(
        Behaviour(
            thinking="Think.",
            text="Done",
            cached_tokens=4,
            tool_calls=[{"name": "get_weather", "input": {"city": "Oslo"}}],
        )
    )
    body = CODEC.encode_request(canonical(tools=[WEATHER], reasoning=Reasoning(effort="low")), TARGET)
    response = CODEC.decode_response(_post(server, body).json())
    thinking, text, call = response.parts
    assert isinstance(thinking, ThinkingPart) and thinking.signature
    assert text == TextPart("Done")
    assert isinstance(call, ToolCallPart) and json.loads(call.arguments) == {"city": "Oslo"}
    assert response.finish_reason == "tool_calls"
    assert response.usage is not None and response.usage.cached_input_tokens == 4
    assert response.usage.reasoning_tokens == 2


def test_round_trip_through_the_fake_server_streamed(fake: tuple[FakeAnthropic, FakeAnthropicServer]) -> None:
    state, server = fake
    state.enqueue(
        Behaviour(
            text="Hello big world", tool_calls=[{"name": "get_weather", "arguments": '{"city": "Oslo"}'}]
        )
    )
    body = CODEC.encode_request(canonical(tools=[WEATHER], stream=True), TARGET)
    events, decoder = decode_stream(_post(server, body).text)
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    arguments = "".join(event.arguments for event in events if isinstance(event, ToolCallDelta))
    assert text == "Hello big world" and json.loads(arguments) == {"city": "Oslo"}
    assert decoder.finish_reason == "tool_calls"
    assert decoder.usage is not None and decoder.usage.output_tokens == 3 + 3

    # …and the same canonical events re-encoded for an Anthropic client give the same answer.
    message = assemble(run_stream(events, decoder.usage))
    assert [block["type"] for block in message["content"]] == ["text", "tool_use"]
    assert message["content"][1]["input"] == {"city": "Oslo"}
