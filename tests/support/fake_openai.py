"""A fake OpenAI-compatible chat-completions server over real HTTP, for the generator and pipeline tests.

It listens on 127.0.0.1 (a free port) in a background thread, records every request, and answers:

* from a queue of canned responses (:meth:`FakeOpenAI.enqueue`), first in first out, for adapter tests;
* else with a fixed response (:meth:`FakeOpenAI.always`), e.g. a 400 on every call;
* else in *pipeline mode*, like a model would for the GeekBlog article pipeline: a JSON plan with the
  number of sections the prompt asks for, Markdown research notes naming the section, a few paragraphs
  for a section, and the article with a summary line under its title (every ``## `` heading kept).

Each request is classified by stage (from the system prompt) and section title (from the user prompt),
so a test can count the calls per (stage, section). ``delay`` (seconds, or a function of the call)
holds each pipeline-mode answer back, long enough for a test to kill the service mid-stage.

Use it as a context manager (``with FakeOpenAI() as fake: ... fake.base_url``): leaving it stops the
server, wakes any answer still being held back, and joins the serving thread.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Stages the pipeline's system prompts name (see ``application/article_pipeline.py``).
STAGE_MARKERS: tuple[tuple[str, str], ...] = (
    ("You plan blog articles", "planning"),
    ("You research one section", "research"),
    ("You write one section", "writing"),
    ("You edit a Markdown blog article", "finishing"),
)

_PYTHON_STRING = r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_SECTION_PATTERNS = (
    re.compile(r"Section: " + _PYTHON_STRING),  # research: "Section: 'Title': brief"
    re.compile(r"Write the section " + _PYTHON_STRING),  # writing: "Write the section 'Title' (brief)"
)
_TOPIC = re.compile(r"about " + _PYTHON_STRING)
_SECTIONS_WANTED = re.compile(r"exactly (\d+) sections?")
_PART = re.compile(r"^Part (\d+):")

ASPECTS = (
    "Why it matters",
    "The core ideas",
    "Getting started",
    "A worked example",
    "Common pitfalls",
    "Performance in practice",
    "Testing it",
    "Running it in production",
    "Alternatives",
    "Security notes",
    "Where it is heading",
    "Further reading",
)


@dataclass(frozen=True)
class Canned:
    """One scripted answer: ``body`` is JSON-encoded unless it is ``str`` or ``bytes``."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Call:
    """One request the server received (``at`` is ``time.monotonic()`` on arrival)."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float
    stage: str | None
    section: str | None

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return messages if isinstance(messages, list) else []

    def message(self, role: str) -> str:
        return next((str(m.get("content", "")) for m in self.messages if m.get("role") == role), "")


Delay = float | Callable[[Call], float]


def completion(content: str, model: str = "fake-model") -> dict[str, Any]:
    """A chat-completions reply body carrying ``content``."""
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(content.split()), "total_tokens": 0},
    }


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def part_number(title: str | None) -> int | None:
    """The n of a pipeline-mode section title ``"Part n: ..."`` (None for anything else)."""
    match = _PART.match(title or "")
    return int(match.group(1)) if match else None


_ids = itertools.count(1)


class FakeOpenAI:
    """The server. ``base_url`` is what to give the adapter or ``GEEKBLOG_LLM_BASE_URL`` (ends in ``/v1``)."""

    def __init__(self, *, delay: Delay = 0.0) -> None:
        self.delay: Delay = delay
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._queue: list[Canned] = []
        self._always: Canned | None = None
        self._stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a client that never finishes its request cannot hold a thread for long

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (a timeout test, a killed service) is expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )

    # --- lifecycle ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes answers being held back by a delay
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ------------------------------------------------------------------------------------

    def enqueue(
        self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None, delay: float = 0.0
    ) -> None:
        """Answer the next request not yet scripted with this (queued answers go first in, first out)."""
        with self._lock:
            self._queue.append(Canned(status, body, dict(headers or {}), delay))

    def reply(self, content: str, *, delay: float = 0.0) -> None:
        """Queue a successful completion carrying ``content``."""
        self.enqueue(200, completion(content), delay=delay)

    def always(self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None) -> None:
        """Answer every request with this once the queue is empty (instead of pipeline mode)."""
        with self._lock:
            self._always = Canned(status, body, dict(headers or {}))

    # --- what it saw ----------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def counts(self, since: int = 0) -> Counter[tuple[str | None, str | None]]:
        """Calls per (stage, section title), from the ``since``-th call on (planning and finishing have no section)."""
        return Counter((call.stage, call.section) for call in self.calls[since:])

    def count(self, stage: str, section: str | None = None, *, since: int = 0) -> int:
        """Calls of ``stage`` (for ``section``, if given) from the ``since``-th call on."""
        return sum(
            1 for call in self.calls[since:] if call.stage == stage and (section is None or call.section == section)
        )

    # --- serving --------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        system, user = _prompts(body)
        stage = classify(system)
        call = Call(
            path=handler.path,
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=body,
            at=time.monotonic(),
            stage=stage,
            section=section_title(user) if stage in ("research", "writing") else None,
        )
        with self._lock:
            self._calls.append(call)
            canned = self._queue.pop(0) if self._queue else self._always
        if canned is None:
            canned = self._pipeline_answer(call)
        if canned.delay > 0 and self._stopping.wait(canned.delay):
            return  # stopping: drop the answer
        payload = canned.body
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain; charset=utf-8"
        elif isinstance(payload, bytes):
            data, content_type = payload, "application/octet-stream"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        try:
            handler.send_response(canned.status)
            headers = {"Content-Type": content_type, **canned.headers, "Content-Length": str(len(data))}
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client hung up (it timed out, or the service was killed)

    def _pipeline_answer(self, call: Call) -> Canned:
        if call.path.rstrip("/") != "/v1/chat/completions":
            return Canned(404, error_body(f"no route {call.path}", "not_found"))
        model = str(call.body.get("model", "fake-model")) if isinstance(call.body, dict) else "fake-model"
        delay = self.delay(call) if callable(self.delay) else self.delay
        return Canned(200, completion(pipeline_reply(call.stage, call.message("user"), call.section), model), {}, delay)


# --- pipeline mode ----------------------------------------------------------------------------------------


def classify(system: str) -> str | None:
    """The pipeline stage a system prompt belongs to (None if it is not one of the pipeline's)."""
    return next((stage for marker, stage in STAGE_MARKERS if marker in system), None)


def section_title(prompt: str) -> str | None:
    """The section title a research or writing prompt names (it is written as a Python repr)."""
    for pattern in _SECTION_PATTERNS:
        match = pattern.search(prompt)
        if match:
            try:
                return str(ast.literal_eval(match.group(1)))
            except (ValueError, SyntaxError):
                return match.group(1)[1:-1]
    return None


def plan_for(prompt: str) -> dict[str, Any]:
    """The plan a model would give: as many sections as the prompt asks for (5 if it does not say)."""
    wanted_match = _SECTIONS_WANTED.search(prompt)
    wanted = int(wanted_match.group(1)) if wanted_match else 5
    topic_match = _TOPIC.search(prompt)
    topic = str(ast.literal_eval(topic_match.group(1))) if topic_match else "the topic"
    sections = [
        {"title": f"Part {n}: {ASPECTS[(n - 1) % len(ASPECTS)]}", "brief": f"What part {n} says about {topic}."}
        for n in range(1, wanted + 1)
    ]
    return {"title": f"A practical guide to {topic}", "sections": sections}


def pipeline_reply(stage: str | None, prompt: str, section: str | None) -> str:
    """What a model would answer to this stage's prompt."""
    if stage == "planning":
        return json.dumps(plan_for(prompt))
    if stage == "research":
        name = section or "this section"
        return (
            f"- Key point of {name}: the idea in one sentence.\n"
            f"- Example for {name}: a short, concrete case.\n"
            f"- Caveat for {name}: where it does not apply."
        )
    if stage == "writing":
        name = section or "this section"
        return (
            f"This section, {name}, starts with the key point and why it matters to the reader.\n\n"
            f"Then it walks through a short example of {name}, step by step.\n\n"
            "It ends with the caveat, so nobody applies the idea where it does not fit."
        )
    if stage == "finishing":
        lines = prompt.splitlines()
        if lines and lines[0].startswith("# "):
            return "\n".join([lines[0], "", "*Summary: what the article covers, in one line.*", *lines[1:]])
        return "*Summary: what the article covers, in one line.*\n\n" + prompt
    return "A plain answer."


def _prompts(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return "", ""
    system = user = ""
    for message in body["messages"]:
        if isinstance(message, dict) and message.get("role") == "system":
            system = str(message.get("content", ""))
        elif isinstance(message, dict) and message.get("role") == "user":
            user = str(message.get("content", ""))
    return system, user
