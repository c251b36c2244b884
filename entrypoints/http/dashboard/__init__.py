"""The browser dashboard at ``/dashboard``: jobs, a job, a workflow's graph, queues and schedules, live."""

from entrypoints.http.dashboard.pages import dashboard_router

__all__ = ["dashboard_router"]
