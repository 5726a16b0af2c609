"""Routing: candidates per request — provider preferences, variants, `models` fallbacks, health."""

from __future__ import annotations

import textwrap
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aistats_gateway.api.errors import GatewayError
from aistats_gateway.catalog import load_catalog
from aistats_gateway.pipeline.preferences import parse_preferences
from aistats_gateway.pipeline.request_features import used_parameters
from aistats_gateway.pipeline.routing import Plan, Router
from aistats_gateway.providers import build_providers
from aistats_gateway.providers.http import UpstreamClient
from aistats_gateway.settings import ROUTE_PARAMETERS, load_settings

# Three keyless OpenAI-compatible providers (always active) and one that needs a key nobody set.
# acme/chat prices (input + output per 1M): gamma 3, beta 6, alpha 9; keyed is inactive.
CONFIG = """
providers:
  alpha: {type: openai_compatible, base_url: "http://127.0.0.1:9001/v1"}
  beta: {type: openai_compatible, base_url: "http://127.0.0.1:9002/v1"}
  gamma: {type: openai_compatible, base_url: "http://127.0.0.1:9003/v1"}
  keyed: {type: openai, api_key_env: KEYED_API_KEY}
models:
  acme/chat:
    providers:
      - {provider: alpha, model: chat-a, price: {input: "3", output: "6"}, max_output_tokens: 16000}
      - {provider: keyed, model: chat-k, price: {input: "0.5", output: "0.5"}}
      - {provider: beta, model: chat-b, price: {input: "2", output: "4"}, max_output_tokens: 8000,
         supported_parameters: [tools, tool_choice, temperature, max_tokens]}
      - {provider: gamma, model: chat-g, price: {input: "1", output: "2"}, max_output_tokens: 4000,
         supported_parameters: [max_tokens]}
  acme/backup:
    providers:
      - {provider: beta, model: backup-b, price: {input: "0.1", output: "0.1"}}
  acme/dark:
    providers:
      - {provider: keyed, model: dark-k, price: {input: "1", output: "1"}}
  acme/embed:
    kind: embeddings
    providers:
      - {provider: alpha, model: embed-a, price: {input: "0.02", output: "0"}}
  acme/tiny:free:
    providers:
      - {provider: gamma, model: tiny-g, price: {input: "0", output: "0"}}
      - {provider: alpha, model: tiny-a, price: {input: "0", output: "0"}}
"""


@dataclass(frozen=True)
class Snapshot:
    state: str = "closed"
    latency_ewma_s: float | None = None
    throughput_tps: float | None = None


@dataclass
class FakeHealth:
    """A HealthView with fixed snapshots per (provider, provider model id)."""

    snapshots: dict[tuple[str, str], Snapshot] = field(default_factory=dict)
    reads: int = 0

    def allow(self, provider: str, model: str) -> bool:
        # A half-open breaker counts each True as a probe: planning must never ask.
        raise AssertionError("Router.plan must not call HealthView.allow")

    def snapshot(self, provider: str, model: str) -> Snapshot:
        self.reads += 1
        return self.snapshots.get((provider, model), Snapshot())


@pytest.fixture
def health() -> FakeHealth:
    return FakeHealth()


@pytest.fixture
def router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, health: FakeHealth) -> Router:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    settings = load_settings(path, env={})
    providers = build_providers(settings.providers, UpstreamClient())
    return Router(load_catalog(settings), providers, health)


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "acme/chat", "messages": [{"role": "user", "content": "hi"}], **body}


def providers_of(plan: Plan) -> list[str]:
    return [c.provider.config.name for c in plan.candidates]


def served(plan: Plan) -> list[tuple[str, str]]:
    return [(c.model.id, c.route.model) for c in plan.candidates]


def plan_error(router: Router, body: dict[str, Any], surface: str = "chat") -> GatewayError:
    with pytest.raises(GatewayError) as info:
        router.plan(body, surface)
    return info.value


# --- the default ---------------------------------------------------------------------------


def test_plain_request_tries_active_providers_cheapest_first(router: Router) -> None:
    plan = router.plan(chat(), "chat")
    assert providers_of(plan) == ["gamma", "beta", "alpha"]  # keyed has no key: left out
    assert plan.allow_fallbacks is True
    assert {c.model.id for c in plan.candidates} == {"acme/chat"}
    assert [c.route.model for c in plan.candidates] == ["chat-g", "chat-b", "chat-a"]


def test_default_order_moves_open_breakers_last_without_dropping_them(
    router: Router, health: FakeHealth
) -> None:
    health.snapshots[("gamma", "chat-g")] = Snapshot(state="open")
    assert providers_of(router.plan(chat(), "chat")) == ["beta", "alpha", "gamma"]
    health.snapshots[("beta", "chat-b")] = Snapshot(state="open")
    assert providers_of(router.plan(chat(), "chat")) == ["alpha", "gamma", "beta"]


def test_half_open_breakers_keep_their_price_rank(router: Router, health: FakeHealth) -> None:
    health.snapshots[("gamma", "chat-g")] = Snapshot(state="half_open")
    assert providers_of(router.plan(chat(), "chat")) == ["gamma", "beta", "alpha"]


def test_default_order_is_health_aware_on_the_general_path_too(router: Router, health: FakeHealth) -> None:
    health.snapshots[("gamma", "chat-g")] = Snapshot(state="open")
    plan = router.plan(chat(provider={"ignore": ["alpha"]}), "chat")
    assert providers_of(plan) == ["beta", "gamma"]


def test_a_single_candidate_plan_reads_no_health(router: Router, health: FakeHealth) -> None:
    plan = router.plan(chat(model="acme/backup"), "chat")
    assert served(plan) == [("acme/backup", "backup-b")]
    assert health.reads == 0


# --- provider.order / only / ignore / allow_fallbacks -------------------------------------------


def test_order_puts_named_providers_first_then_the_rest_cheapest_first(router: Router) -> None:
    plan = router.plan(chat(provider={"order": ["alpha"]}), "chat")
    assert providers_of(plan) == ["alpha", "gamma", "beta"]
    plan = router.plan(chat(provider={"order": ["alpha", "beta"]}), "chat")
    assert providers_of(plan) == ["alpha", "beta", "gamma"]


def test_order_matches_provider_names_case_insensitively(router: Router) -> None:
    assert providers_of(router.plan(chat(provider={"order": ["Beta"]}), "chat"))[0] == "beta"


def test_order_is_kept_even_when_the_first_breaker_is_open(router: Router, health: FakeHealth) -> None:
    health.snapshots[("alpha", "chat-a")] = Snapshot(state="open")
    assert providers_of(router.plan(chat(provider={"order": ["alpha"]}), "chat"))[0] == "alpha"


def test_order_without_fallbacks_keeps_only_the_named_providers(router: Router) -> None:
    plan = router.plan(chat(provider={"order": ["beta", "alpha"], "allow_fallbacks": False}), "chat")
    assert providers_of(plan) == ["beta", "alpha"]
    assert plan.allow_fallbacks is False


def test_allow_fallbacks_false_marks_the_plan_and_ignores_fallback_models(router: Router) -> None:
    plan = router.plan(chat(models=["acme/backup"], provider={"allow_fallbacks": False}), "chat")
    assert plan.allow_fallbacks is False
    assert providers_of(plan) == ["gamma", "beta", "alpha"]
    assert {c.model.id for c in plan.candidates} == {"acme/chat"}


def test_only_keeps_the_listed_providers_in_price_order(router: Router) -> None:
    assert providers_of(router.plan(chat(provider={"only": ["alpha", "beta"]}), "chat")) == ["beta", "alpha"]


def test_ignore_drops_the_listed_providers(router: Router) -> None:
    assert providers_of(router.plan(chat(provider={"ignore": ["gamma"]}), "chat")) == ["beta", "alpha"]


def test_only_that_matches_nothing_explains_every_route(router: Router) -> None:
    error = plan_error(router, chat(provider={"only": ["nobody"]}))
    assert (error.status, error.reason, error.code) == (503, "no_provider_available", "no_provider_available")
    assert error.message.startswith("No provider is available for model 'acme/chat': ")
    assert "set KEYED_API_KEY to activate provider 'keyed'" in error.message
    for name in ("alpha", "beta", "gamma"):
        assert f"provider '{name}' is not in provider.only" in error.message


def test_ignore_of_every_provider_says_so(router: Router) -> None:
    error = plan_error(router, chat(provider={"ignore": ["alpha", "beta", "gamma"]}))
    assert "provider 'beta' is in provider.ignore" in error.message


# --- provider.sort and the variants ---------------------------------------------------------


def test_sort_price_is_cheapest_first(router: Router) -> None:
    assert providers_of(router.plan(chat(provider={"sort": "price"}), "chat")) == ["gamma", "beta", "alpha"]


def test_sort_latency_is_fastest_first_and_unknown_last(router: Router, health: FakeHealth) -> None:
    health.snapshots[("alpha", "chat-a")] = Snapshot(latency_ewma_s=0.2)
    health.snapshots[("beta", "chat-b")] = Snapshot(latency_ewma_s=0.9)
    assert providers_of(router.plan(chat(provider={"sort": "latency"}), "chat")) == ["alpha", "beta", "gamma"]


def test_sort_throughput_is_highest_first_and_unknown_last(router: Router, health: FakeHealth) -> None:
    health.snapshots[("alpha", "chat-a")] = Snapshot(throughput_tps=40.0)
    health.snapshots[("beta", "chat-b")] = Snapshot(throughput_tps=120.0)
    plan = router.plan(chat(provider={"sort": "throughput"}), "chat")
    assert providers_of(plan) == ["beta", "alpha", "gamma"]


def test_sort_still_puts_open_breakers_last(router: Router, health: FakeHealth) -> None:
    health.snapshots[("alpha", "chat-a")] = Snapshot(state="open", throughput_tps=500.0)
    health.snapshots[("beta", "chat-b")] = Snapshot(throughput_tps=120.0)
    plan = router.plan(chat(provider={"sort": "throughput"}), "chat")
    assert providers_of(plan) == ["beta", "gamma", "alpha"]


def test_sort_object_form_with_partition_none_sorts_across_models(router: Router) -> None:
    body = chat(models=["acme/backup"], provider={"sort": {"by": "price", "partition": "none"}})
    # acme/backup (0.2 per 1M) is cheaper than every acme/chat route, so it comes first.
    assert served(router.plan(body, "chat"))[0] == ("acme/backup", "backup-b")
    body = chat(models=["acme/backup"], provider={"sort": {"by": "price"}})  # partition "model"
    assert served(router.plan(body, "chat"))[-1] == ("acme/backup", "backup-b")


def test_nitro_variant_sorts_by_throughput(router: Router, health: FakeHealth) -> None:
    health.snapshots[("alpha", "chat-a")] = Snapshot(throughput_tps=300.0)
    plan = router.plan(chat(model="acme/chat:nitro"), "chat")
    assert providers_of(plan) == ["alpha", "gamma", "beta"]
    assert {c.model.id for c in plan.candidates} == {"acme/chat"}


def test_floor_variant_sorts_by_price_and_wins_over_provider_sort(router: Router, health: FakeHealth) -> None:
    health.snapshots[("alpha", "chat-a")] = Snapshot(latency_ewma_s=0.01)
    plan = router.plan(chat(model="acme/chat:floor", provider={"sort": "latency"}), "chat")
    assert providers_of(plan) == ["gamma", "beta", "alpha"]


def test_free_is_part_of_the_id_and_variants_stack_on_it(router: Router, health: FakeHealth) -> None:
    assert served(router.plan(chat(model="acme/tiny:free"), "chat")) == [
        ("acme/tiny:free", "tiny-g"),
        ("acme/tiny:free", "tiny-a"),
    ]
    health.snapshots[("alpha", "tiny-a")] = Snapshot(throughput_tps=90.0)
    plan = router.plan(chat(model="acme/tiny:free:nitro"), "chat")
    assert served(plan) == [("acme/tiny:free", "tiny-a"), ("acme/tiny:free", "tiny-g")]


def test_unknown_variant_is_an_unknown_model(router: Router) -> None:
    error = plan_error(router, chat(model="acme/chat:turbo"))
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")


# --- provider.max_price --------------------------------------------------------------------


def test_max_price_drops_routes_above_either_limit(router: Router) -> None:
    plan = router.plan(chat(provider={"max_price": {"prompt": 2, "completion": "4"}}), "chat")
    assert providers_of(plan) == ["gamma", "beta"]
    plan = router.plan(chat(provider={"max_price": {"completion": 2.5}}), "chat")
    assert providers_of(plan) == ["gamma"]


def test_max_price_request_and_image_limits_are_always_met(router: Router) -> None:
    plan = router.plan(chat(provider={"max_price": {"request": 0, "image": 0}}), "chat")
    assert providers_of(plan) == ["gamma", "beta", "alpha"]


def test_max_price_too_low_names_the_price_and_the_limit(router: Router) -> None:
    error = plan_error(router, chat(provider={"max_price": {"prompt": "0.5"}}))
    assert error.status == 503
    assert "provider 'gamma' charges $1 per 1M prompt tokens, above provider.max_price.prompt ($0.5)" in (
        error.message
    )


# --- provider.require_parameters and max tokens -----------------------------------------------


def test_require_parameters_keeps_routes_declaring_every_used_parameter(router: Router) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    # alpha declares nothing (= everything), beta declares tools, gamma does not.
    plan = router.plan(chat(tools=tools, provider={"require_parameters": True}), "chat")
    assert providers_of(plan) == ["beta", "alpha"]
    # Without the preference every provider stays.
    assert providers_of(router.plan(chat(tools=tools), "chat")) == ["gamma", "beta", "alpha"]


def test_require_parameters_with_no_supporting_provider_names_the_parameters(router: Router) -> None:
    body = chat(seed=7, temperature=0.2, provider={"require_parameters": True, "only": ["gamma"]})
    error = plan_error(router, body)
    assert "provider 'gamma' does not support seed, temperature (provider.require_parameters is true)" in (
        error.message
    )


@pytest.mark.parametrize(
    ("surface", "body"),
    [
        ("chat", chat(max_tokens=6000)),
        ("chat", chat(max_completion_tokens=6000, max_tokens=10)),
        ("responses", {"model": "acme/chat", "input": "hi", "max_output_tokens": 6000}),
        ("messages", {"model": "acme/chat", "messages": [], "max_tokens": 6000}),
    ],
)
def test_routes_below_the_requested_output_tokens_are_left_out(
    router: Router, surface: str, body: dict[str, Any]
) -> None:
    assert providers_of(router.plan(body, surface)) == ["beta", "alpha"]  # gamma allows 4000


def test_max_tokens_above_every_limit_says_so(router: Router) -> None:
    error = plan_error(router, chat(max_tokens=20000))
    assert error.status == 503
    assert "provider 'alpha' allows at most 16000 output tokens, fewer than the 20000 requested" in (
        error.message
    )


# --- models[] fallbacks ---------------------------------------------------------------------


def test_fallback_models_follow_the_primary_and_bill_as_themselves(router: Router) -> None:
    plan = router.plan(chat(models=["acme/tiny:free", "acme/backup"]), "chat")
    assert served(plan) == [
        ("acme/chat", "chat-g"),
        ("acme/chat", "chat-b"),
        ("acme/chat", "chat-a"),
        ("acme/tiny:free", "tiny-g"),
        ("acme/tiny:free", "tiny-a"),
        ("acme/backup", "backup-b"),
    ]
    assert plan.candidates[-1].model.routes[0].price.input == 100_000_000


def test_fallback_models_apply_provider_preferences_and_their_own_variants(
    router: Router, health: FakeHealth
) -> None:
    health.snapshots[("alpha", "tiny-a")] = Snapshot(throughput_tps=90.0)
    plan = router.plan(chat(models=["acme/tiny:free:nitro"], provider={"ignore": ["beta"]}), "chat")
    assert served(plan) == [
        ("acme/chat", "chat-g"),
        ("acme/chat", "chat-a"),
        ("acme/tiny:free", "tiny-a"),
        ("acme/tiny:free", "tiny-g"),
    ]


def test_a_model_repeated_in_models_is_planned_once(router: Router) -> None:
    plan = router.plan(chat(models=["acme/chat", "acme/chat:floor"]), "chat")
    assert providers_of(plan) == ["gamma", "beta", "alpha"]


def test_unavailable_primary_falls_back_to_the_models_list(router: Router) -> None:
    plan = router.plan(chat(model="acme/dark", models=["acme/backup"]), "chat")
    assert served(plan) == [("acme/backup", "backup-b")]


def test_unknown_primary_with_a_known_fallback_uses_the_fallback(router: Router) -> None:
    plan = router.plan(chat(model="acme/nope", models=["acme/backup"]), "chat")
    assert served(plan) == [("acme/backup", "backup-b")]


def test_unknown_model_inside_models_is_a_400_on_models(router: Router) -> None:
    error = plan_error(router, chat(models=["acme/backup", "acme/ghost"]))
    assert (error.status, error.reason, error.param) == (400, "validation_error", "models")
    assert "'acme/ghost'" in error.message


@pytest.mark.parametrize("models", ["acme/backup", [1], [""]])
def test_models_must_be_a_list_of_ids(router: Router, models: object) -> None:
    error = plan_error(router, chat(models=models))
    assert (error.status, error.param) == (400, "models")


def test_every_requested_model_unknown_is_a_404(router: Router) -> None:
    error = plan_error(router, chat(model="acme/nope", models=["acme/ghost"]))
    assert (error.status, error.reason, error.code, error.param) == (
        404,
        "not_found_error",
        "model_not_found",
        "model",
    )
    assert "'acme/nope', 'acme/ghost'" in error.message


def test_unavailable_primary_and_fallbacks_explain_each_model(router: Router) -> None:
    error = plan_error(router, chat(model="acme/dark", models=["acme/backup"], provider={"ignore": ["beta"]}))
    assert error.status == 503
    assert "model 'acme/dark': set KEYED_API_KEY to activate provider 'keyed'." in error.message
    assert "model 'acme/backup': provider 'beta' is in provider.ignore." in error.message


# --- errors ---------------------------------------------------------------------------------


def test_unknown_model_is_404_model_not_found(router: Router) -> None:
    error = plan_error(router, chat(model="acme/nope"))
    assert (error.status, error.reason, error.code, error.param) == (
        404,
        "not_found_error",
        "model_not_found",
        "model",
    )
    assert error.message.startswith("Model 'acme/nope' does not exist.")


def test_model_with_only_inactive_providers_names_the_variable(router: Router) -> None:
    error = plan_error(router, chat(model="acme/dark"))
    assert (error.status, error.code) == (503, "no_provider_available")
    assert error.message == (
        "No provider is available for model 'acme/dark': set KEYED_API_KEY to activate provider 'keyed'."
    )


@pytest.mark.parametrize(
    ("provider", "param"),
    [
        ("openai", "provider"),
        ({"odrer": ["alpha"]}, "provider.odrer"),
        ({"order": "alpha"}, "provider.order"),
        ({"only": [1]}, "provider.only"),
        ({"ignore": [""]}, "provider.ignore"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
        ({"require_parameters": 1}, "provider.require_parameters"),
        ({"sort": "fastest"}, "provider.sort"),
        ({"sort": {"by": "speed"}}, "provider.sort.by"),
        ({"sort": {"by": "price", "partition": "all"}}, "provider.sort.partition"),
        ({"sort": {"by": "price", "order": 1}}, "provider.sort.order"),
        ({"max_price": 5}, "provider.max_price"),
        ({"max_price": {"prompt": "cheap"}}, "provider.max_price.prompt"),
        ({"max_price": {"completion": -1}}, "provider.max_price.completion"),
        ({"max_price": {"completion": True}}, "provider.max_price.completion"),
        ({"max_price": {"tokens": 1}}, "provider.max_price.tokens"),
        ({"data_collection": "maybe"}, "provider.data_collection"),
        ({"zdr": "yes"}, "provider.zdr"),
        ({"quantizations": "fp8"}, "provider.quantizations"),
    ],
)
def test_malformed_provider_object_is_a_400_naming_the_field(
    router: Router, provider: object, param: str
) -> None:
    error = plan_error(router, chat(provider=provider))
    assert (error.status, error.reason, error.param) == (400, "validation_error", param)
    assert param in error.message


def test_openrouter_fields_without_routing_effect_and_nulls_are_accepted(router: Router) -> None:
    provider = {
        "data_collection": "deny",
        "zdr": True,
        "enforce_distillable_text": False,
        "quantizations": ["fp8"],
        "order": None,
        "sort": None,
        "max_price": None,
        "only": [],
    }
    assert providers_of(router.plan(chat(provider=provider), "chat")) == ["gamma", "beta", "alpha"]


def test_preferences_are_normalised() -> None:
    prefs = parse_preferences({"order": ["Alpha", "beta", "alpha"], "max_price": {"prompt": "1.25"}})
    assert prefs.order == ("alpha", "beta")
    assert prefs.max_prompt_price == 1_250_000_000


# --- availability ---------------------------------------------------------------------------


def test_is_available_reflects_active_providers(router: Router) -> None:
    assert router.is_available("acme/chat")
    assert router.is_available("acme/chat:nitro")
    assert router.is_available("acme/tiny:free")
    assert not router.is_available("acme/dark")
    assert not router.is_available("acme/nope")


# --- request features -----------------------------------------------------------------------


def test_chat_request_features() -> None:
    body = {
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "tools": [{"type": "function"}],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {}},
        "reasoning_effort": "low",
        "stop": ["END"],
        "seed": 1,
        "logprobs": True,
        "temperature": 0.1,
        "top_p": 0.9,
        "top_k": 40,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.1,
        "max_tokens": 10,
    }
    assert used_parameters(body, "chat") == ROUTE_PARAMETERS
    plain = {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}}
    plain["tools"] = []
    assert used_parameters(plain, "chat") == frozenset()


def test_responses_request_features() -> None:
    body = {
        "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}],
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
        "reasoning": {"effort": "high"},
        "include": ["message.output_text.logprobs"],
        "max_output_tokens": 5,
    }
    assert used_parameters(body, "responses") == {
        "images",
        "response_format",
        "reasoning",
        "logprobs",
        "max_tokens",
    }
    assert used_parameters({"input": "hi", "text": {"format": {"type": "text"}}}, "responses") == frozenset()


def test_messages_request_features() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [image]}]}
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "output_config": {"format": {"type": "json_schema", "schema": {}}},
        "stop_sequences": ["END"],
        "top_k": 5,
        "max_tokens": 100,
    }
    assert used_parameters(body, "messages") == {
        "images",
        "reasoning",
        "response_format",
        "stop",
        "top_k",
        "max_tokens",
    }
    off = {"messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "disabled"}}
    assert used_parameters(off, "messages") == frozenset()


# --- cost of the plain path -----------------------------------------------------------------


def test_plain_plan_is_cheap_and_reuses_the_precomputed_plan(router: Router) -> None:
    body = chat(max_tokens=100)
    first = router.plan(body, "chat")
    assert router.plan(body, "chat") is first  # no per-request allocation of candidates
    runs = 20_000
    seconds = timeit.timeit(lambda: router.plan(body, "chat"), number=runs)
    print(f"Router.plan, plain request, 3 candidates: {seconds / runs * 1e6:.2f} µs")


# --- model kinds ---------------------------------------------------------------------------


def test_a_model_of_another_kind_is_refused_naming_the_path_that_serves_it(router: Router) -> None:
    error = plan_error(router, chat(model="acme/embed"))
    assert error.status == 400 and error.param == "model"
    assert "embeddings model" in error.message and "POST /v1/embeddings" in error.message
    fallback = plan_error(router, chat(models=["acme/embed"]))
    assert "embeddings model" in fallback.message


def test_a_surface_plans_only_models_of_its_kind(router: Router) -> None:
    plan = router.plan({"model": "acme/embed", "input": "hi"}, "embeddings")
    assert served(plan) == [("acme/embed", "embed-a")]
    error = plan_error(router, {"model": "acme/chat", "input": "hi"}, "embeddings")
    assert "chat model" in error.message and "/v1/chat/completions" in error.message
