"""``geekblog article "TOPIC"``: write an article through the service, showing each stage and section live."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from entrypoints.client.errors import StreamBroken, UsageError, WaitTimeout
from entrypoints.client.render import to_json
from entrypoints.exit_codes import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from entrypoints.client.http import ApiClient

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

DONE = frozenset({"FINISHED", "FAILED"})


def add_article_command(
    subparsers: SubParsers,
    common: argparse.ArgumentParser,
    command: Callable[[Callable[[argparse.Namespace, ApiClient], int]], Callable[[argparse.Namespace], int]],
) -> None:
    article = subparsers.add_parser(
        "article",
        parents=[common],
        help="write an article with the GeekBlog pipeline",
        description="Create a project for TOPIC, run planning, research and writing of every section in "
        "parallel, assembly and finishing on the service, show each stage live, then write the Markdown.",
    )
    article.add_argument("topic", metavar="TOPIC", help="what the article is about")
    article.add_argument("--sections", type=int, metavar="N", help="how many sections (1..12, default 5)")
    article.add_argument("--audience", help="who it is for (default: general readers)")
    article.add_argument("--tone", help="how it should sound (default: friendly and precise)")
    article.add_argument("--out", metavar="FILE", help="write the Markdown to FILE (default: standard output)")
    article.add_argument("--timeout", type=float, metavar="S", default=600.0, help="give up after S seconds (exit 3)")
    article.set_defaults(handler=command(run_article))


def run_article(args: argparse.Namespace, client: ApiClient) -> int:
    if args.sections is not None and not 1 <= args.sections <= 12:
        raise UsageError(f"--sections must be between 1 and 12, got {args.sections}")
    body = {"topic": args.topic, "sections": args.sections, "audience": args.audience, "tone": args.tone}
    project = client.post("/projects", {key: value for key, value in body.items() if value is not None}).data
    project_id = str(project["id"])
    started = client.post(f"/projects/{project_id}/article").data
    progress = StageDisplay(sys.stderr)
    progress.line(f"project {project_id}: writing {args.topic!r} (workflow {started['workflow_id']})")
    deadline = time.monotonic() + args.timeout
    final = _follow(client, project_id, progress, deadline)
    if args.json:
        print(to_json(final))
    if final["status"] == "FAILED":
        progress.line(f"failed: {final.get('error') or 'see the workflow'}")
        return EXIT_FAILED
    markdown = client.get_text(f"/projects/{project_id}/article")
    if args.out:
        try:
            Path(args.out).write_text(markdown, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        progress.line(f"wrote {len(markdown.split()):,} words to {args.out}")
    elif not args.json:
        sys.stdout.write(markdown)
        sys.stdout.flush()
    return EXIT_OK


def _follow(client: ApiClient, project_id: str, progress: StageDisplay, deadline: float) -> dict[str, Any]:
    """Show the project's event stream until it is FINISHED or FAILED (polling if the stream breaks)."""
    try:
        for message in client.events(f"/projects/{project_id}/events", deadline=deadline):
            data = message.data
            if message.event == "state" and "topic" in data:  # a service before issue 15: the project itself
                progress.project(data)
                if data.get("status") in DONE:
                    break
                continue
            if message.event == "state" and data.get("kind") == "project":  # the stream's snapshot: its status
                progress.project(client.get(f"/projects/{project_id}").data)
                if data.get("state") in DONE:
                    break
                continue
            progress.event(data)
            if data.get("kind") == "project" and data.get("state") in DONE:
                break
    except StreamBroken:
        progress.line("(the event stream broke; polling the project instead)")
    delay = 0.2
    while True:
        project: dict[str, Any] = client.get(f"/projects/{project_id}").data
        if project.get("status") in DONE:
            return project
        if time.monotonic() > deadline:
            raise WaitTimeout(f"project {project_id} did not finish in time (status {project.get('status')})")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


class StageDisplay:
    """One line per stage and per section as they start and finish, and a count of sections written."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._sections: dict[str, str] = {}
        self._written: set[str] = set()

    def line(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def project(self, project: dict[str, Any]) -> None:
        plan = project.get("plan") or {}
        self._sections = {section["id"]: section["title"] for section in plan.get("sections", [])}
        self._written = set(project.get("drafts") or {})

    def event(self, data: dict[str, Any]) -> None:
        meta = (data.get("progress") or {}).get("meta") or {}
        stage = meta.get("stage", "")
        section = meta.get("section") or self._sections.get(meta.get("section_id", ""), meta.get("section_id", ""))
        if stage == "planning" and "sections" in meta:
            self._sections = dict(zip(meta.get("section_ids", []), meta["sections"], strict=False))
            self.line(f"[planning]  {len(meta['sections'])} sections planned")
            for index, title in enumerate(meta["sections"], 1):
                self.line(f"            {index}. {title}")
        elif stage == "planning":
            self.line("[planning]  planning the article ...")
        elif stage == "sections":
            self.line(f"[sections]  researching and writing {meta.get('sections', '')} sections in parallel")
        elif stage in ("research", "writing"):
            if meta.get("done"):
                if stage == "writing":
                    self._written.add(str(meta.get("section_id")))
                    self.line(
                        f"[writing ]  done: {section}  ({len(self._written)}/{len(self._sections) or '?'} written)"
                    )
                else:
                    self.line(f"[research]  done: {section}")
            else:
                self.line(f"[{stage:<8}]  {section} ...")
        elif stage == "assembly":
            self.line(f"[assembly]  {meta.get('words', 0):,} words assembled")
        elif stage == "finishing" and "words" in meta:
            self.line(f"[finished]  {meta['words']:,} words")
        elif stage == "finishing":
            self.line("[finishing] editing the article ...")
        elif stage == "failed":
            self.line(f"[failed]    {meta.get('error', '')}")
