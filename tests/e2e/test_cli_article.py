"""``geekblog article``: the whole pipeline through the real service and the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from domain.article import section_headings
from tests.e2e.conftest import ROOT, Service

GEEKBLOG = Path(sys.executable).with_name("geekblog")


def article(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GEEKBLOG), "article", *args, "--url", service.url],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestArticleCommand:
    def test_writes_the_article_showing_each_stage_and_section(
        self, make_service: Callable[..., Service], tmp_path: Path
    ) -> None:
        service = make_service(GEEKBLOG_OFFLINE_DELAY="0.02")
        out = tmp_path / "article.md"
        done = article(service, "Durable task queues", "--sections", "3", "--out", str(out))
        assert done.returncode == 0, done.stderr
        markdown = out.read_text()
        headings = section_headings(markdown)
        assert len(headings) == 3
        log = done.stderr
        assert "3 sections planned" in log
        for title in headings:
            assert f"[research]  done: {title}" in log
            assert f"done: {title}" in log.split("[writing ]", 1)[1]
        assert "(3/3 written)" in log
        assert "[finished]" in log and f"to {out}" in log

    def test_prints_the_markdown_when_no_file_is_given(self, service: Service) -> None:
        done = article(service, "Caching", "--sections", "2")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("# ") and len(section_headings(done.stdout)) == 2

    def test_a_failing_model_server_fails_the_command(self, make_service: Callable[..., Service]) -> None:
        service = make_service(
            GEEKBLOG_LLM_BASE_URL="http://127.0.0.1:9/v1", GEEKBLOG_LLM_MAX_RETRIES="0", GEEKBLOG_LLM_TIMEOUT="1"
        )
        done = article(service, "Caching", "--sections", "2")
        assert done.returncode == 1
        assert "failed: planning: GenerationFailed" in done.stderr and "cannot reach" in done.stderr
        assert "Traceback" not in done.stderr

    def test_bad_input_is_refused_with_one_line(self, service: Service) -> None:
        done = article(service, "Caching", "--sections", "40")
        assert done.returncode == 2
        assert done.stderr.strip() == "geekblog: --sections must be between 1 and 12, got 40"
