"""The offline text generator: deterministic, no network, real structured Markdown from the stage's inputs.

It is the default, so the pipeline, its tests and a first ``geekblog article`` run anywhere. It does
not pretend to know facts: it organises what it is given (topic, audience, tone, section briefs and
notes) into the shape each stage must produce.
"""

from __future__ import annotations

import asyncio
import hashlib

import msgspec

from application.ports.text_generator import GenerationFailed, GenerationRequest, TextGenerator

_ANGLES = (
    ("Why {topic} matters", "The problem {topic} solves and who feels it."),
    ("The core ideas behind {topic}", "The few concepts everything else builds on."),
    ("{topic} in practice", "A worked example from first step to result."),
    ("Common pitfalls with {topic}", "Mistakes that cost time, and how to spot them early."),
    ("Measuring success with {topic}", "Which numbers show it works, and how to collect them."),
    ("Tools and building blocks for {topic}", "What to use, and what to skip at first."),
    ("Trade-offs and alternatives to {topic}", "When something else is the better choice."),
    ("Getting started with {topic}", "A plan for the first week."),
    ("Where {topic} is heading", "Trends worth watching and what they change."),
)


class OfflineTextGenerator(TextGenerator):
    """Writes each stage's output from its inputs with fixed templates; same inputs, same text."""

    name = "offline"

    def __init__(self, delay: float = 0.0) -> None:
        self._delay = delay  # seconds per call, to stand in for a model's latency in demos and tests

    async def generate(self, request: GenerationRequest) -> str:
        if self._delay:
            await asyncio.sleep(self._delay)
        inputs = request.inputs
        if request.stage == "planning":
            return self._plan(inputs)
        if request.stage == "research":
            return self._research(inputs)
        if request.stage == "writing":
            return self._write(inputs)
        if request.stage == "finishing":
            return self._finish(inputs)
        raise GenerationFailed(f"the offline generator has no template for stage {request.stage!r}")

    async def close(self) -> None:
        return None

    def _plan(self, inputs: dict[str, str]) -> str:
        topic = inputs["topic"]
        wanted = max(1, int(inputs.get("sections", "5")))
        sections = []
        for index in range(wanted):
            extra = ("{topic}: part " + str(index + 1), "More on {topic}.")
            title, brief = _ANGLES[index] if index < len(_ANGLES) else extra
            sections.append({"title": title.format(topic=topic), "brief": brief.format(topic=topic)})
        return msgspec.json.encode({"title": f"{topic}: a practical guide", "sections": sections}).decode()

    def _research(self, inputs: dict[str, str]) -> str:
        title, brief, topic = inputs["section"], inputs.get("brief", ""), inputs["topic"]
        audience = inputs.get("audience", "general readers")
        points = [
            f"Question to answer: {brief or title}",
            f"What {audience} already know about {topic}, and what they need from this section",
            f"One concrete example that shows {title.lower()}",
            f"A number or observation that makes the point checkable ({_tag(title)})",
            "A caveat: where this advice stops applying",
        ]
        return f'Notes for "{title}":\n\n' + "\n".join(f"- {point}" for point in points)

    def _write(self, inputs: dict[str, str]) -> str:
        title, topic = inputs["section"], inputs["topic"]
        tone, audience = inputs.get("tone", "friendly and precise"), inputs.get("audience", "general readers")
        notes = [line[2:] for line in inputs.get("notes", "").splitlines() if line.startswith("- ")]
        opening = (
            f"This section looks at {title[0].lower() + title[1:]}, written for {audience} in a {tone} voice. "
            f"{inputs.get('brief', '')}".strip()
        )
        body = [opening]
        for point in notes[:4]:
            body.append(
                f"{point.rstrip('.')}. In the context of {topic}, this is where a reader decides whether to keep going."
            )
        body.append(f"In short: {title.lower()} is a step you can take today, and the next section builds on it.")
        return "\n\n".join(body)

    def _finish(self, inputs: dict[str, str]) -> str:
        article = inputs["article"].strip()
        topic, audience = inputs["topic"], inputs.get("audience", "general readers")
        lines = article.splitlines()
        title = lines[0] if lines and lines[0].startswith("# ") else f"# {topic}"
        rest = "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()
        headings = [line[3:] for line in rest.splitlines() if line.startswith("## ")]
        summary = f"> **In brief:** {len(headings)} parts on {topic}, for {audience}: " + "; ".join(headings) + "."
        minutes = max(1, round(len(article.split()) / 200))
        return f"{title}\n\n{summary}\n\n*About {minutes} min read.*\n\n{rest}\n\n---\n\n*Thanks for reading.*\n"


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]
