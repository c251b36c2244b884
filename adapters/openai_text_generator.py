"""A text generator for any OpenAI-compatible chat-completions server: OpenAI, Ollama, vLLM, llama.cpp."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from application.ports.text_generator import GenerationFailed, GenerationRequest, TextGenerator

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAICompatibleGenerator(TextGenerator):
    """``POST {base_url}/chat/completions`` with timeouts, and retries with backoff on 429, 5xx and timeouts.

    Other errors (a bad key, an unknown model, a malformed reply) fail at once with the server's words.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self._max_retries = max_retries
        self._backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    async def generate(self, request: GenerationRequest) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.prompt},
            ],
            "max_tokens": request.max_tokens,
            "temperature": 0.7,
        }
        if request.json_output:
            body["response_format"] = {"type": "json_object"}
        last = "no attempt made"
        retry_after: float | None = None
        for attempt in range(self._max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                response = await self._client.post("/chat/completions", json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self._client.timeout.read} s"
                continue
            except httpx.TransportError as exc:
                last = f"cannot reach {self._client.base_url}: {exc}"
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}: {_server_message(response)}"
                retry_after = _retry_after(response)
                continue
            if response.status_code >= 400:
                refused = f"HTTP {response.status_code}: {_server_message(response)}"
                raise GenerationFailed(f"{request.stage}: the model server refused: {refused}")
            return _content(response, request.stage)
        raise GenerationFailed(f"{request.stage}: gave up after {self._max_retries + 1} attempts: {last}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 60.0)
        return float(self._backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2))

    async def close(self) -> None:
        await self._client.aclose()


def _content(response: httpx.Response, stage: str) -> str:
    try:
        data = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GenerationFailed(f"{stage}: malformed reply from the model server: {response.text[:200]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise GenerationFailed(f"{stage}: the model server replied with no text")
    return content


def _server_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    return response.text[:200] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
