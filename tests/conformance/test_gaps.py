"""Honest gaps: a feature the chosen provider cannot honour is refused with a 400 naming the
parameter and the provider, before any upstream call; nothing is silently dropped."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conformance.conftest import Matrix
from tests.conformance.scenarios import GAP_CASES, MODEL_FOR_FORMAT, PROMPT


@pytest.mark.parametrize(("provider_format", "extra", "param"), GAP_CASES)
def test_chat_parameter_a_provider_cannot_honour_is_refused(
    matrix: Matrix, provider_format: str, extra: dict, param: str
) -> None:
    fake = matrix.fakes[provider_format]
    fake.reset()
    with pytest.raises(openai.BadRequestError) as caught:
        matrix.openai().chat.completions.create(
            model=MODEL_FOR_FORMAT[provider_format], messages=[{"role": "user", "content": PROMPT}], **extra
        )
    assert caught.value.response.json()["error"]["param"] == param
    assert param in caught.value.message and provider_format in caught.value.message
    assert fake.requests == [], "a refused request never reaches the provider"


def test_image_url_is_not_fetched_for_a_provider_that_needs_inline_bytes(matrix: Matrix) -> None:
    fake = matrix.fakes["gemini"]
    fake.reset()
    content = [
        {"type": "text", "text": PROMPT},
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        matrix.openai().chat.completions.create(
            model=MODEL_FOR_FORMAT["gemini"], messages=[{"role": "user", "content": content}]
        )
    assert "does not fetch" in caught.value.message or "inline" in caught.value.message
    assert fake.requests == []


def test_anthropic_requires_max_tokens_on_the_messages_surface(matrix: Matrix) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        matrix.anthropic().post(
            "/v1/messages",
            body={"model": MODEL_FOR_FORMAT["chat"], "messages": [{"role": "user", "content": PROMPT}]},
            cast_to=object,
        )
    assert "max_tokens" in caught.value.message
    assert caught.value.response.json()["type"] == "error"


def test_provider_rejecting_the_gateways_key_is_a_provider_error_not_the_callers(matrix: Matrix) -> None:
    fake = matrix.fakes["gemini"]
    fake.reset()
    api_key, fake.api_key = fake.api_key, "another-key"  # the gateway's configured key is now wrong
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            matrix.openai().chat.completions.create(
                model=MODEL_FOR_FORMAT["gemini"], messages=[{"role": "user", "content": PROMPT}]
            )
    finally:
        fake.api_key = api_key
    assert caught.value.status_code == 502
    assert "credentials" in caught.value.message
