"""Every error the issue names, in the contract shape, through real sockets."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e_fixtures import Live
from tests.fakes.openai_server import Behaviour
from tests.harness import Admin, GatewayServer, fake_provider_config, gateway_settings

FREE = "google/gemma-3-27b:free"
CHAT = "/v1/chat/completions"


def _post(
    live: Live, body: bytes | dict, headers: dict[str, str] | None = None, path: str = CHAT
) -> httpx.Response:
    all_headers = {"authorization": f"Bearer {live.key}", **(headers or {})}
    with httpx.Client(base_url=live.gateway.base_url, timeout=10) as http:
        if isinstance(body, bytes):
            return http.post(path, content=body, headers={"content-type": "application/json", **all_headers})
        return http.post(path, json=body, headers=all_headers)


def _assert_error(response: httpx.Response, status: int, reason: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status and body["reason"] == reason
    assert body["error"]["type"] == reason and "message" in body["error"] and "param" in body["error"]
    assert body["generation_id"] == response.headers["x-generation-id"]
    final = status < 500 and status != 429
    assert (response.headers.get("x-should-retry") == "false") is final
    return body


def test_malformed_json_is_a_validation_error(live: Live) -> None:
    _assert_error(_post(live, b"{not json"), 400, "validation_error")


def test_body_that_is_not_an_object_is_rejected(live: Live) -> None:
    _assert_error(_post(live, b"[1, 2]"), 400, "validation_error")


def test_missing_model_names_the_param(live: Live) -> None:
    body = _assert_error(_post(live, {"messages": []}), 400, "validation_error")
    assert body["error"]["param"] == "model"


def test_bad_max_tokens_names_the_param(live: Live) -> None:
    body = _assert_error(_post(live, {"model": FREE, "max_tokens": -5}), 400, "validation_error")
    assert body["error"]["param"] == "max_tokens"


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_bad_key_in_either_header_is_401(live: Live, header: str) -> None:
    wrong = live.key[:-4] + "AAAA"
    value = f"Bearer {wrong}" if header == "authorization" else wrong
    with httpx.Client(base_url=live.gateway.base_url) as http:
        response = http.post(CHAT, json={"model": FREE}, headers={header: value})
    _assert_error(response, 401, "authentication_error")


def test_x_api_key_header_authenticates(live: Live) -> None:
    with httpx.Client(base_url=live.gateway.base_url) as http:
        response = http.post(
            CHAT,
            json={"model": FREE, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": live.key},
        )
    assert response.status_code == 200, response.text


def test_sdk_sees_authentication_error_for_malformed_key(live: Live) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        live.client("sk-not-ours").responses.create(model=FREE, input="hi")
    assert "aistats_v1_sk_" in caught.value.message


def test_unknown_model_is_404_model_not_found(live: Live) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        live.client().chat.completions.create(
            model="nope/model", messages=[{"role": "user", "content": "hi"}]
        )
    body = caught.value.response.json()
    assert body["error"]["code"] == "model_not_found" and body["reason"] == "not_found_error"


def test_upstream_4xx_keeps_the_providers_message_and_status(live: Live) -> None:
    live.fake.enqueue(
        Behaviour(
            status=400,
            error={"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}},
        )
    )
    with pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(model=FREE, messages=[{"role": "user", "content": "hi"}])
    assert "max_tokens is too large" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_upstream_429_is_429_with_retry_after(live: Live) -> None:
    live.fake.enqueue(Behaviour(status=429, headers={"retry-after": "7"}))
    response = _post(live, {"model": FREE, "messages": [{"role": "user", "content": "hi"}]})
    _assert_error(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "7"


def test_upstream_5xx_is_502_provider_error(live: Live) -> None:
    live.fake.enqueue(Behaviour(status=503))
    _assert_error(
        _post(live, {"model": FREE, "messages": [{"role": "user", "content": "hi"}]}), 502, "provider_error"
    )


def test_upstream_timeout_is_504(live: Live) -> None:
    live.fake.enqueue(Behaviour(delay=3.0))  # the fixture's read timeout is 2 s
    _assert_error(
        _post(live, {"model": FREE, "messages": [{"role": "user", "content": "hi"}]}), 504, "timeout_error"
    )


def test_unreachable_provider_is_502(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, fake_provider_config("http://127.0.0.1:9/v1"))
    key, _ = Admin(settings).create_key()
    with GatewayServer(settings) as gateway, pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(key).chat.completions.create(model=FREE, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502 and "unreachable" in caught.value.message


def test_model_with_only_inactive_providers_is_503_naming_the_variable(live: Live) -> None:
    # openai/gpt-4o is in the built-in catalog on the built-in 'openai' provider, which has no key here.
    with pytest.raises(openai.APIStatusError) as caught:
        live.client().chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 503
    assert "OPENAI_API_KEY" in caught.value.message
    assert caught.value.response.json()["reason"] == "no_provider_available"


def test_error_after_stream_start_is_an_error_event_not_a_silent_end(live: Live) -> None:
    live.fake.enqueue(Behaviour(text="one two three four five six", drop_after_chunks=3))
    stream = live.client().chat.completions.create(
        model=FREE, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "the stream had started before the provider dropped"
    assert "closed the connection" in caught.value.message


def test_responses_stream_error_is_an_error_event(live: Live) -> None:
    live.fake.enqueue(Behaviour(text="one two three four five six", drop_after_chunks=4))
    with httpx.Client(base_url=live.gateway.base_url, timeout=10) as http:
        response = http.post(
            "/v1/responses",
            json={"model": FREE, "input": "hi", "stream": True},
            headers={"authorization": f"Bearer {live.key}"},
        )
    assert response.status_code == 200
    assert "event: error" in response.text and "event: response.failed" in response.text


def test_failed_generation_is_recorded_without_charge(live: Live) -> None:
    live.fake.enqueue(Behaviour(status=500))
    response = _post(live, {"model": FREE, "messages": [{"role": "user", "content": "hi"}]})
    generation_id = response.headers["x-generation-id"]
    record = httpx.get(
        f"{live.gateway.base_url}/v1/generations?id={generation_id}",
        headers={"authorization": f"Bearer {live.key}"},
    ).json()["data"]
    assert record["status"] == "failed" and record["cost_nanos"] == 0 and "provider_error" in record["error"]
