"""The dashboard's pages: small server-rendered shells that ``static/dashboard.js`` fills from the JSON API.

The pages read everything through the service's own routes (``/jobs``, ``/workflows``, ``/queues``,
``/schedules``) and watch the existing event streams, so the dashboard shows exactly what a client sees
and adds no second way to read or change a job. Nothing is loaded from outside the service: the
script and the style sheet are package data served under ``/dashboard/static/``.
"""

from __future__ import annotations

import hmac
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import MediaType, Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.static_files import create_static_files_router

from entrypoints.http.dashboard.session import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    cookie_value,
    csrf_token,
    new_session,
    valid_session,
)

STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATES = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")


def shell(title: str, page: str, body: str, *, csrf: str = "", item_id: str = "", login: bool = False) -> str:
    """A whole page: the common head and navigation around ``body``; ``page`` tells the script what to fill."""
    logout = '<button id="logout" type="button">Log out</button>' if login else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{escape(csrf)}">
<title>{escape(title)} · GeekBlog Tasks</title>
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
<script src="/dashboard/static/dashboard.js" defer></script>
</head>
<body data-page="{escape(page)}" data-id="{escape(item_id)}">
<header><a class="brand" href="/dashboard">GeekBlog Tasks</a><nav><a href="/dashboard">Jobs</a>
<a href="/schema/openapi.json">OpenAPI</a></nav>{logout}</header>
<main>
{body}
</main>
</body>
</html>
"""


def jobs_body() -> str:
    options = "".join(f'<option value="{state}">{state}</option>' for state in STATES)
    return f"""<h1>Jobs</h1>
<section class="grid">
<form id="submit-job" class="card">
<h2>Submit a job</h2>
<label>Task <input name="task" list="task-names" required autocomplete="off"></label>
<datalist id="task-names"></datalist>
<label>Arguments (JSON list) <input name="args" value="[]"></label>
<label>Keyword arguments (JSON object) <input name="kwargs" value="{{}}"></label>
<button type="submit">Submit job</button>
<p class="error" role="alert"></p>
</form>
<form id="submit-workflow" class="card">
<h2>Submit a workflow</h2>
<label>Canvas (JSON) <textarea name="canvas" rows="5" required
placeholder='{{"chain": [{{"task": "add", "args": [1, 2]}}, {{"task": "add", "args": [3]}}]}}'></textarea></label>
<button type="submit">Submit workflow</button>
<p class="error" role="alert"></p>
</form>
<section class="card" id="queues">
<h2>Queues</h2>
<table><thead><tr><th>Queue</th><th>Waiting</th></tr></thead><tbody></tbody></table>
<h2>Finished per minute</h2>
<div id="throughput" class="bars" aria-label="jobs finished in each of the last 10 minutes"></div>
</section>
</section>
<form id="filters" class="filters">
<label>State <select name="state"><option value="">any</option>{options}</select></label>
<label>Task <input name="task" autocomplete="off"></label>
<label>Queue <input name="queue" autocomplete="off"></label>
<label>Created <select name="since"><option value="">any time</option>
<option value="5">last 5 min</option><option value="60">last hour</option>
<option value="1440">last day</option></select></label>
<label>Id <input name="id" placeholder="job or workflow id" autocomplete="off"></label>
<button type="submit">Apply</button>
<p class="error" role="alert"></p>
</form>
<table id="jobs" class="list"><thead><tr><th>Id</th><th>Task</th><th>State</th><th>Queue</th><th>Created</th>
<th>Finished</th></tr></thead><tbody></tbody></table>
<section id="schedules" class="card" hidden>
<h2>Schedules</h2>
<table><thead><tr><th>Name</th><th>Task</th><th>Every / cron</th><th>Enabled</th><th>Next run</th></tr></thead>
<tbody></tbody></table>
</section>
"""


JOB_BODY = """<h1>Job <code id="job-id"></code></h1>
<p><span id="state" class="state"></span> <span id="task"></span></p>
<div class="progress" role="progressbar" aria-label="progress"><div id="progress-bar"></div></div>
<p id="progress-text"></p>
<p class="actions"><button id="cancel" type="button" disabled>Cancel</button>
<button id="retry" type="button" disabled>Retry</button> <span class="error" role="alert"></span></p>
<dl id="facts"></dl>
<h2>Arguments</h2><pre id="args"></pre>
<h2>Result</h2><pre id="result"></pre>
<section id="error" hidden><h2>Error</h2><p id="error-message"></p><pre id="traceback"></pre></section>
<h2>Timeline</h2><ol id="timeline"></ol>
"""

WORKFLOW_BODY = """<h1>Workflow <code id="workflow-id"></code></h1>
<p><span id="state" class="state"></span></p>
<p class="actions"><button id="cancel" type="button" disabled>Cancel</button>
<span class="error" role="alert"></span></p>
<h2>Graph</h2><div id="graph" class="graph"></div>
<h2>Steps</h2>
<table class="list" id="steps"><thead><tr><th>Node</th><th>Job</th><th>Task</th><th>State</th></tr></thead>
<tbody></tbody></table>
<section id="error" hidden><h2>Error</h2><p id="error-message"></p><pre id="traceback"></pre></section>
"""


def login_body(message: str = "") -> str:
    alert = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return f"""<h1>Log in</h1>
<form method="post" action="/dashboard/login" class="card login">
<label>API token <input name="token" type="password" required autocomplete="current-password"></label>
<button type="submit">Log in</button>
{alert}
</form>
"""


def dashboard_router(api_token: str | None) -> Router:
    """Every ``/dashboard`` route; ``api_token`` is the service's ``GEEKBLOG_API_TOKEN``, if any."""
    token = api_token.encode() if api_token else None

    def page(request: Request[Any, Any, Any], title: str, name: str, body: str, item_id: str = "") -> Response[str]:
        csrf = ""
        if token is not None:
            session = cookie_value(request.scope["headers"])
            if session is not None and valid_session(session, token):
                csrf = csrf_token(session, token)
        html = shell(title, name, body, csrf=csrf, item_id=item_id, login=token is not None)
        return Response(html, media_type=MediaType.HTML, headers=SECURITY_HEADERS)

    @get("/", sync_to_thread=False)
    def jobs(request: Request[Any, Any, Any]) -> Response[str]:
        return page(request, "Jobs", "jobs", jobs_body())

    @get("/jobs/{job_id:str}", sync_to_thread=False)
    def job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[str]:
        return page(request, f"Job {job_id}", "job", JOB_BODY, job_id)

    @get("/workflows/{workflow_id:str}", sync_to_thread=False)
    def workflow(request: Request[Any, Any, Any], workflow_id: FromPath[str]) -> Response[str]:
        return page(request, f"Workflow {workflow_id}", "workflow", WORKFLOW_BODY, workflow_id)

    @get("/login", sync_to_thread=False)
    def login_form() -> Response[str]:
        if token is None:
            return Response("", status_code=303, headers={"Location": "/dashboard"})
        return Response(shell("Log in", "login", login_body()), media_type=MediaType.HTML, headers=SECURITY_HEADERS)

    @post("/login", status_code=303)
    async def login(request: Request[Any, Any, Any]) -> Response[str]:
        if token is None:
            return Response("", status_code=303, headers={"Location": "/dashboard"})
        if not same_origin(request):
            return Response("cross-site login refused", status_code=403, media_type=MediaType.TEXT)
        form = await request.form()
        presented = form.get("token")
        if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), token):
            html = shell("Log in", "login", login_body("That is not the service's API token."))
            return Response(html, status_code=401, media_type=MediaType.HTML, headers=SECURITY_HEADERS)
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=new_session(token),
            path="/",
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return Response("", status_code=303, headers={"Location": "/dashboard"}, cookies=[cookie])

    @post("/logout", status_code=303)
    async def logout() -> Response[str]:
        gone = Cookie(key=SESSION_COOKIE, value="", path="/", max_age=0, httponly=True, samesite="strict")
        return Response("", status_code=303, headers={"Location": "/dashboard/login"}, cookies=[gone])

    handlers: list[HTTPRouteHandler] = [jobs, job, workflow, login_form, login, logout]
    static = create_static_files_router(
        path="/static", directories=[STATIC], include_in_schema=False, send_as_attachment=False
    )
    return Router(path="/dashboard", route_handlers=[*handlers, static], include_in_schema=False)


def same_origin(request: Request[Any, Any, Any]) -> bool:
    """Whether a form post came from a page of this service (no ``Origin`` header: not a browser's
    cross-site post, which always sends one)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")
