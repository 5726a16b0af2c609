"""What the bench sends: the scenarios, their request bodies, and what a right answer holds.

The mock cannot read request bodies, so it routes by path prefix (``/v1``, ``/stream/v1``,
``/slow/v1``, ``/slow-stream/v1``, ``/paced/v1``). Targets that route by model (the gateway,
LiteLLM) get one model per prefix; targets that only forward (direct, nginx) get the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

MOCK_DIR = Path(__file__).resolve().parent / "mock"

# USD per 1M tokens: the same price card in gateway.yaml.tmpl and litellm.yaml.tmpl.
PRICE_INPUT = Decimal("0.15")
PRICE_OUTPUT = Decimal("0.60")

SYSTEM_PROMPT = "You are a terse assistant. Answer in one sentence."
USER_PROMPT = "Say the benchmark sentence, exactly as you were told."

# (slow, stream) -> model id, as in gateway.yaml.tmpl and litellm.yaml.tmpl.
MODELS = {
    (False, False): "bench/fast",
    (False, True): "bench/stream",
    (True, False): "bench/slow",
    (True, True): "bench/slow-stream",
}


@dataclass(frozen=True)
class Expected:
    """What every right answer carries: the canned text and the canned usage."""

    text: str
    input_tokens: int
    output_tokens: int

    @property
    def cost_usd(self) -> float:
        """The gateway's cost for that usage at the bench price card, in USD."""
        per_million = self.input_tokens * PRICE_INPUT + self.output_tokens * PRICE_OUTPUT
        return float(per_million / 1_000_000)


def load_expected() -> Expected:
    """Read the expectation from the canned chat body (the streams are checked against it)."""
    chat = orjson.loads((MOCK_DIR / "chat.json").read_bytes())
    usage = chat["usage"]
    return Expected(
        chat["choices"][0]["message"]["content"], usage["prompt_tokens"], usage["completion_tokens"]
    )


@dataclass(frozen=True)
class Scenario:
    """One cell row of the matrix: surface, streaming, upstream delay and connections."""

    surface: str  # "chat" or "responses"
    stream: bool
    slow: bool  # the mock answers after 20 ms
    connections: int
    paced: bool = False  # 20 ms between stream chunks (the 500-stream probe only)

    @property
    def name(self) -> str:
        kind = f"{self.surface} stream" if self.stream else self.surface
        upstream = "paced mock" if self.paced else ("mock +20 ms" if self.slow else "mock")
        return f"{kind}, c{self.connections}, {upstream}"

    @property
    def key(self) -> str:
        """A short stable id, e.g. ``chat-c64`` or ``responses-stream-c16-slow``."""
        parts = [self.surface, *(["stream"] if self.stream else []), f"c{self.connections}"]
        if self.slow:
            parts.append("slow")
        if self.paced:
            parts.append("paced")
        return "-".join(parts)

    @property
    def prefix(self) -> str:
        """The mock's path prefix for this scenario."""
        if self.paced:
            return "/paced"
        if self.slow:
            return "/slow-stream" if self.stream else "/slow"
        return "/stream" if self.stream else ""

    @property
    def model(self) -> str:
        """The model id the gateway and LiteLLM route to the same mock prefix."""
        if self.paced:
            return "bench/paced"
        return MODELS[(self.slow, self.stream)]

    @property
    def api_path(self) -> str:
        return "/v1/chat/completions" if self.surface == "chat" else "/v1/responses"

    def body(self) -> bytes:
        """The JSON request body (the same bytes for every target)."""
        if self.surface == "chat":
            payload: dict[str, object] = {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": USER_PROMPT},
                ],
                "max_tokens": 256,
                "temperature": 0,
            }
            if self.stream:
                payload["stream"] = True
                payload["stream_options"] = {"include_usage": True}
        else:
            payload = {
                "model": self.model,
                "instructions": SYSTEM_PROMPT,
                "input": USER_PROMPT,
                "max_output_tokens": 256,
                "temperature": 0,
            }
            if self.stream:
                payload["stream"] = True
        return orjson.dumps(payload)


def full_matrix() -> list[Scenario]:
    """Chat and responses at 1 and 64 connections, streams at 16; then all against the 20 ms mock."""
    cells: list[Scenario] = []
    for slow in (False, True):
        for surface in ("chat", "responses"):
            cells.append(Scenario(surface, stream=False, slow=slow, connections=1))
            cells.append(Scenario(surface, stream=False, slow=slow, connections=64))
        for surface in ("chat", "responses"):
            cells.append(Scenario(surface, stream=True, slow=slow, connections=16))
    return cells


def quick_matrix() -> list[Scenario]:
    """The regression check: chat at 64 connections and chat streams at 16, fast mock."""
    return [
        Scenario("chat", stream=False, slow=False, connections=64),
        Scenario("chat", stream=True, slow=False, connections=16),
    ]


PROBE_SCENARIO = Scenario("chat", stream=True, slow=False, connections=500, paced=True)
