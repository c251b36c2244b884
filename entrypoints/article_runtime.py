"""Which article pipeline the ``ai.*`` tasks use in this process (set by the service or an embedded engine)."""

from __future__ import annotations

from application.article_pipeline import ArticlePipeline

_pipelines: list[ArticlePipeline] = []


def activate(pipeline: ArticlePipeline) -> None:
    _pipelines.append(pipeline)


def deactivate(pipeline: ArticlePipeline) -> None:
    if pipeline in _pipelines:
        _pipelines.remove(pipeline)


def pipeline() -> ArticlePipeline:
    if not _pipelines:
        raise RuntimeError("the article pipeline is not configured in this process")
    return _pipelines[-1]
