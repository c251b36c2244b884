"""Live views of a job or workflow being followed: JSON lines, or state lines and progress bars."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TextIO

from entrypoints.client.errors import CommandError
from entrypoints.client.follow import TERMINAL_STATES, Watcher
from entrypoints.client.render import ProgressLine, outcome, progress_counts, progress_text, step_line

if TYPE_CHECKING:
    from entrypoints.client.http import ApiClient


class JsonLines(Watcher):
    """Every message as the server sent it, one JSON document per line (``watch --json``)."""

    def __init__(self, out: TextIO, notes: TextIO) -> None:
        self.out = out
        self.notes = notes

    def snapshot(self, document: dict[str, Any], raw: str) -> None:
        self._line(raw)

    def event(self, name: str, event: dict[str, Any], raw: str) -> None:
        self._line(raw)

    def note(self, message: str) -> None:
        print(f"geekblog: {message}", file=self.notes, flush=True)

    def _line(self, raw: str) -> None:
        self.out.write(" ".join(raw.splitlines()) + "\n")
        self.out.flush()


class _PeopleView(Watcher):
    """What the views for people share: notes end any progress bar first, on their own line."""

    progress: ProgressLine | None
    notes: TextIO

    def note(self, message: str) -> None:
        self.finish()
        print(f"geekblog: {message}", file=self.notes, flush=True)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.finish()


class JobView(_PeopleView):
    """A job for people: progress counts as a bar on ``progress``; state changes and other progress as
    lines on ``out`` (none if ``out`` is None). The terminal state is left to the caller."""

    def __init__(self, job_id: str, *, out: TextIO | None, progress: ProgressLine | None, notes: TextIO) -> None:
        self.job_id = job_id
        self.out = out
        self.progress = progress
        self.notes = notes
        self.task = "?"
        self.state: str | None = None

    def snapshot(self, document: dict[str, Any], raw: str) -> None:
        self.task = str(document.get("task") or self.task)
        self._state(str(document.get("state")))
        if document.get("progress") and document.get("state") not in TERMINAL_STATES:
            self._progress(document["progress"])

    def event(self, name: str, event: dict[str, Any], raw: str) -> None:
        if event.get("id") != self.job_id:
            return
        self.task = str(event.get("task") or self.task)  # a stream's first event is the job's state, with its task
        if event.get("progress") is not None:
            self._progress(event["progress"])
        else:
            self._state(str(event.get("state")))

    def _state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self.out is not None and state not in TERMINAL_STATES:
            self.finish()
            print(f"job {self.job_id} {self.task} {state}", file=self.out, flush=True)

    def _progress(self, progress: dict[str, Any]) -> None:
        if progress_counts(progress) is not None:
            if self.progress is not None:
                self.progress.update(f"{self.task} {progress_text(progress)}")
        elif self.out is not None:
            self.finish()
            print(f"job {self.job_id} {self.task} {progress_text(progress)}", file=self.out, flush=True)


class WorkflowView(_PeopleView):
    """A workflow for people: a line per step as it finishes and per change of the workflow's state
    on ``out``, step progress as a bar on ``progress``. The terminal state is left to the caller."""

    def __init__(
        self, client: ApiClient, workflow_id: str, *, out: TextIO, progress: ProgressLine | None, notes: TextIO
    ) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.out = out
        self.progress = progress
        self.notes = notes
        self.state: str | None = None
        self.nodes: dict[str, dict[str, Any]] = {}
        self.reported: set[str] = set()

    def snapshot(self, document: dict[str, Any], raw: str) -> None:
        self._learn(document)
        for node in document.get("nodes") or []:
            state = str(node.get("state"))
            if state in TERMINAL_STATES:
                self._step(str(node.get("job_id")), str(node.get("task")), state, "")
        self._state(str(document.get("state")))

    def event(self, name: str, event: dict[str, Any], raw: str) -> None:
        if event.get("kind") == "workflow":
            if event.get("id") == self.workflow_id:
                self._state(str(event.get("state")))
            return
        job_id = str(event.get("id"))
        task = str(event.get("task") or "?")
        if event.get("progress") is not None:
            if self.progress is not None and progress_counts(event["progress"]) is not None:
                label = f"step {self._node(job_id) or '?'} {task}"
                self.progress.update(f"{label} {progress_text(event['progress'])}")
        elif event.get("state") in TERMINAL_STATES:
            self._step(job_id, task, str(event.get("state")), outcome(event))

    def _state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if state not in TERMINAL_STATES:
            self.finish()
            print(f"workflow {self.workflow_id} {state}", file=self.out, flush=True)

    def _step(self, job_id: str, task: str, state: str, tail: str) -> None:
        if job_id in self.reported:
            return
        self.reported.add(job_id)
        self.finish()
        print(step_line(self._node(job_id), task, job_id, state, tail), file=self.out, flush=True)

    def _node(self, job_id: str) -> str | None:
        if job_id not in self.nodes:
            with contextlib.suppress(CommandError):
                self._learn(self.client.get(f"/workflows/{self.workflow_id}").data)
            self.nodes.setdefault(job_id, {})  # asked once: not again for every event of this job
        node = self.nodes.get(job_id, {}).get("node")
        return None if node is None else str(node)

    def _learn(self, document: Any) -> None:
        if isinstance(document, dict):
            for node in document.get("nodes") or []:
                if isinstance(node, dict) and node.get("job_id"):
                    self.nodes[str(node["job_id"])] = node
