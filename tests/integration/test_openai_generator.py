"""The OpenAI-compatible generator against a fake chat-completions server over real HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from adapters.openai_text_generator import OpenAICompatibleGenerator
from application.ports.text_generator import GenerationFailed, GenerationRequest
from tests.support.fake_openai import FakeOpenAI, completion, error_body

REQUEST = GenerationRequest(stage="research", system="You research one section.", prompt="Section: 'Intro': hi")

MakeGenerator = Callable[..., OpenAICompatibleGenerator]


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def make_generator(fake: FakeOpenAI) -> AsyncIterator[MakeGenerator]:
    made: list[OpenAICompatibleGenerator] = []

    def make(**options: Any) -> OpenAICompatibleGenerator:
        settings: dict[str, Any] = {"api_key": "sk-test", "timeout": 5.0, "max_retries": 3, "backoff": 0.01}
        settings.update(options)
        base_url = settings.pop("base_url", fake.base_url)
        generator = OpenAICompatibleGenerator(base_url, settings.pop("model", "test-model"), **settings)
        made.append(generator)
        return generator

    yield make
    for generator in made:
        await generator.close()


async def test_success_sends_an_openai_chat_completions_request(
    fake: FakeOpenAI, make_generator: MakeGenerator
) -> None:
    fake.reply("- a note")
    generator = make_generator(model="llama3.2", api_key="sk-secret")

    assert await generator.generate(REQUEST) == "- a note"

    [call] = fake.calls
    assert call.path == "/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer sk-secret"
    assert call.headers["content-type"] == "application/json"
    assert call.body["model"] == "llama3.2"
    assert call.body["messages"] == [
        {"role": "system", "content": REQUEST.system},
        {"role": "user", "content": REQUEST.prompt},
    ]
    assert call.body["max_tokens"] == REQUEST.max_tokens
    assert "temperature" in call.body
    assert "response_format" not in call.body


async def test_no_api_key_sends_no_authorization(fake: FakeOpenAI, make_generator: MakeGenerator) -> None:
    fake.reply("ok")
    assert await make_generator(api_key=None).generate(REQUEST) == "ok"
    assert "authorization" not in fake.calls[0].headers


async def test_json_output_asks_for_a_json_object(fake: FakeOpenAI, make_generator: MakeGenerator) -> None:
    fake.reply('{"title": "T", "sections": []}')
    request = GenerationRequest(stage="planning", system="Answer with JSON only", prompt="Plan", json_output=True)

    assert await make_generator().generate(request) == '{"title": "T", "sections": []}'
    assert fake.calls[0].body["response_format"] == {"type": "json_object"}


async def test_429_with_retry_after_is_retried_after_the_servers_delay(
    fake: FakeOpenAI, make_generator: MakeGenerator
) -> None:
    fake.enqueue(429, error_body("Rate limit reached", "requests"), headers={"Retry-After": "0"})
    fake.reply("after the rate limit")
    generator = make_generator(backoff=30.0)  # Retry-After: 0 must win over a 30 s backoff
    began = time.monotonic()

    assert await generator.generate(REQUEST) == "after the rate limit"

    assert time.monotonic() - began < 5
    assert len(fake.calls) == 2


async def test_5xx_is_retried_until_the_retries_are_spent(fake: FakeOpenAI, make_generator: MakeGenerator) -> None:
    for _ in range(3):
        fake.enqueue(503, error_body("The server is overloaded", "server_error"))
    fake.reply("too late")  # a fourth request would get this

    with pytest.raises(GenerationFailed, match="gave up after 3 attempts") as failed:
        await make_generator(max_retries=2).generate(REQUEST)

    assert "HTTP 503: The server is overloaded" in str(failed.value)
    assert str(failed.value).startswith("research: ")
    assert len(fake.calls) == 3


async def test_a_timeout_is_retried_then_fails(fake: FakeOpenAI, make_generator: MakeGenerator) -> None:
    for _ in range(2):
        fake.enqueue(200, completion("slow"), delay=2.0)
    began = time.monotonic()

    with pytest.raises(GenerationFailed, match="timed out") as failed:
        await make_generator(timeout=0.2, max_retries=1).generate(REQUEST)

    assert "gave up after 2 attempts" in str(failed.value)
    assert len(fake.calls) == 2
    assert time.monotonic() - began < 1.9  # did not wait for the slow answers


@pytest.mark.parametrize("body", [{"nope": 1}, "this is not JSON"], ids=["json-without-choices", "not-json"])
async def test_a_malformed_reply_fails_at_once(fake: FakeOpenAI, make_generator: MakeGenerator, body: Any) -> None:
    fake.enqueue(200, body)
    fake.reply("a retry would get this")

    with pytest.raises(GenerationFailed, match="malformed reply"):
        await make_generator().generate(REQUEST)

    assert len(fake.calls) == 1


async def test_an_empty_reply_fails_at_once(fake: FakeOpenAI, make_generator: MakeGenerator) -> None:
    fake.reply("   ")
    with pytest.raises(GenerationFailed, match="no text"):
        await make_generator().generate(REQUEST)
    assert len(fake.calls) == 1


async def test_401_fails_at_once_with_the_servers_message(fake: FakeOpenAI, make_generator: MakeGenerator) -> None:
    message = "Incorrect API key provided: sk-bad. You can find your API key at https://example.invalid."
    fake.enqueue(401, error_body(message, "invalid_request_error", "invalid_api_key"))
    fake.reply("a retry would get this")

    with pytest.raises(GenerationFailed) as failed:
        await make_generator(api_key="sk-bad").generate(REQUEST)

    assert message in str(failed.value)
    assert "HTTP 401" in str(failed.value)
    assert len(fake.calls) == 1


async def test_an_unreachable_server_is_retried_then_fails(make_generator: MakeGenerator) -> None:
    generator = make_generator(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=1)
    with pytest.raises(GenerationFailed, match=r"gave up after 2 attempts: cannot reach"):
        await generator.generate(REQUEST)
