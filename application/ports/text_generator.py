"""Port: a text generator (a language model, or the offline stand-in) for the article pipeline."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

Stage = Literal["planning", "research", "writing", "finishing"]


class GenerationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What one pipeline stage asks for. ``inputs`` carries the structured facts the prompt was built
    from (topic, section title, notes ...), so a generator without a model can still write from them."""

    stage: Stage
    system: str
    prompt: str
    inputs: dict[str, str] = msgspec.field(default_factory=dict)
    max_tokens: int = 900
    json_output: bool = False


class GenerationFailed(Exception):
    """The generator could not produce text (the message says why, e.g. the server's answer)."""


class TextGenerator(Protocol):
    """Turns a request into text. Raises :class:`GenerationFailed`; retrying transient faults is its job."""

    name: str

    async def generate(self, request: GenerationRequest) -> str: ...

    async def close(self) -> None: ...
