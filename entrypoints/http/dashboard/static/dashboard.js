// GeekBlog Tasks dashboard: fills the server-rendered pages from the JSON API and keeps them live over the
// event streams (GET /jobs/{id}/events, /workflows/{id}/events). No framework, nothing loaded from elsewhere.
"use strict";

const TERMINAL = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { window.location.assign("/dashboard/login"); throw new Error("log in first"); }
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(data?.detail || data?.title || `${response.status} ${response.statusText}`);
  return data;
}

const json = (value) => JSON.stringify(value, null, 2);
const when = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const stateBadge = (state) => el("span", { class: `state state-${state}`, textContent: state });

function showError(form, error) {
  const slot = $(".error", form);
  if (slot) slot.textContent = error ? String(error.message || error) : "";
}

// ---- the jobs page -------------------------------------------------------------------------------------

function jobsPage() {
  const filters = $("#filters");
  const params = new URLSearchParams(window.location.search);
  for (const name of ["state", "task", "queue", "since"]) filters.elements[name].value = params.get(name) || "";

  filters.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(filters, null);
    const id = filters.elements.id.value.trim();
    if (id) {
      for (const kind of ["jobs", "workflows"]) {
        try { await api("GET", `/${kind}/${encodeURIComponent(id)}`); window.location.assign(`/dashboard/${kind}/${encodeURIComponent(id)}`); return; }
        catch { /* try the next kind */ }
      }
      showError(filters, `no job or workflow has the id ${id}`);
      return;
    }
    const query = new URLSearchParams();
    for (const name of ["state", "task", "queue", "since"]) if (filters.elements[name].value) query.set(name, filters.elements[name].value);
    history.replaceState(null, "", `/dashboard${query.size ? `?${query}` : ""}`);
    refreshJobs();
  });

  submitForm($("#submit-job"), (form) => {
    const body = { task: form.elements.task.value.trim(), args: JSON.parse(form.elements.args.value || "[]"), kwargs: JSON.parse(form.elements.kwargs.value || "{}") };
    return api("POST", "/jobs", body).then((job) => `/dashboard/jobs/${job.id}`);
  });
  submitForm($("#submit-workflow"), (form) => api("POST", "/workflows", { canvas: JSON.parse(form.elements.canvas.value) })
    .then((workflow) => `/dashboard/workflows/${workflow.id}`));

  api("GET", "/tasks").then((tasks) => $("#task-names").replaceChildren(...tasks.map((task) => el("option", { value: task.name })))).catch(() => {});
  refreshJobs(); refreshQueues(); refreshSchedules();
  setInterval(refreshJobs, 2000); setInterval(refreshQueues, 3000); setInterval(refreshSchedules, 15000);
}

function submitForm(form, send) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(form, null);
    try { window.location.assign(await send(form)); } catch (error) { showError(form, error); }
  });
}

async function refreshJobs() {
  const filters = $("#filters");
  const query = new URLSearchParams({ limit: "100" });
  for (const name of ["state", "task", "queue"]) if (filters.elements[name].value) query.set(name, filters.elements[name].value.trim());
  const minutes = Number(filters.elements.since.value);
  let page;
  try { page = await api("GET", `/jobs?${query}`); } catch (error) { showError(filters, error); return; }
  const since = minutes ? Date.now() - minutes * 60000 : 0;
  const rows = page.items.filter((job) => Date.parse(job.created_at) >= since).map((job) => el("tr", { data: { id: job.id } },
    el("td", {}, el("a", { href: `/dashboard/jobs/${job.id}`, textContent: job.id.slice(0, 12) })),
    el("td", { textContent: job.task }), el("td", {}, stateBadge(job.state)), el("td", { textContent: job.queue }),
    el("td", { textContent: when(job.created_at) }), el("td", { textContent: when(job.finished_at) })));
  $("#jobs tbody").replaceChildren(...rows);
}

async function refreshQueues() {
  try {
    const queues = await api("GET", "/queues");
    const rows = queues.map((q) => el("tr", {}, el("td", { textContent: q.name }), el("td", { textContent: q.waiting })));
    $("#queues tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 2, textContent: "no job is waiting" }))]));
    const finished = [];
    for (const state of ["SUCCESS", "FAILURE"]) finished.push(...(await api("GET", `/jobs?state=${state}&limit=500`)).items);
    const now = Date.now();
    const counts = new Array(10).fill(0);
    for (const job of finished) {
      const age = Math.floor((now - Date.parse(job.finished_at)) / 60000);
      if (age >= 0 && age < 10) counts[9 - age] += 1;
    }
    const top = Math.max(1, ...counts);
    $("#throughput").replaceChildren(...counts.map((count, index) => {
      const bar = el("span", { class: "bar", title: `${count} finished ${9 - index} min ago` }, el("em", { textContent: count }));
      bar.style.height = `${Math.round((count / top) * 100)}%`;
      return bar;
    }));
  } catch { /* shown again at the next refresh */ }
}

async function refreshSchedules() {
  try {
    const { items } = await api("GET", "/schedules");
    $("#schedules").hidden = items.length === 0;
    $("#schedules tbody").replaceChildren(...items.map((s) => el("tr", {}, el("td", { textContent: s.name }), el("td", { textContent: s.task }),
      el("td", { textContent: s.cron ?? `${s.every} s` }), el("td", { textContent: s.enabled ? "yes" : "paused" }), el("td", { textContent: when(s.next_run) }))));
  } catch { /* shown again at the next refresh */ }
}

// ---- a job's page --------------------------------------------------------------------------------------

function jobPage(id) {
  $("#job-id").textContent = id;
  const timeline = $("#timeline");
  const note = (text, at) => timeline.append(el("li", {}, el("time", { textContent: when(at) || new Date().toLocaleTimeString() }), ` ${text}`));
  let stream = null;

  const render = (job) => {
    $("#state").replaceWith(Object.assign(stateBadge(job.state), { id: "state" }));
    $("#task").textContent = job.task;
    $("#args").textContent = json({ args: job.args, kwargs: job.kwargs });
    $("#result").textContent = job.result === null ? "" : json(job.result);
    $("#error").hidden = !job.error;
    if (job.error) { $("#error-message").textContent = `${job.error.type}: ${job.error.message}`; $("#traceback").textContent = job.error.traceback || ""; }
    const facts = { Queue: job.queue, Attempts: job.attempts, "Max retries": job.max_retries ?? "unlimited", Priority: job.priority,
      Created: job.created_at, Due: job.due_at, Started: job.started_at, Finished: job.finished_at, Workflow: job.workflow_id };
    $("#facts").replaceChildren(...Object.entries(facts).filter(([, v]) => v !== null && v !== undefined).flatMap(([k, v]) => [el("dt", { textContent: k }),
      el("dd", {}, k === "Workflow" ? el("a", { href: `/dashboard/workflows/${v}`, textContent: v }) : String(v))]));
    progress(job.state, job.progress);
    $("#cancel").disabled = TERMINAL.has(job.state);
    $("#retry").disabled = !(job.state === "FAILURE" || job.state === "REVOKED");
  };

  const progress = (state, value) => {
    const meta = value?.meta ?? {};
    const done = meta.done ?? meta.current, total = meta.total;
    let percent = state === "SUCCESS" ? 100 : 0;
    if (typeof done === "number" && typeof total === "number" && total > 0) percent = Math.min(100, Math.round((done / total) * 100));
    $("#progress-bar").style.width = `${percent}%`;
    $(".progress").setAttribute("aria-valuenow", String(percent));
    $("#progress-text").textContent = value ? `${value.state} ${json(value.meta)}` : "";
  };

  const load = async () => {
    const job = await api("GET", `/jobs/${encodeURIComponent(id)}`);
    render(job);
    return job;
  };

  const watch = () => {
    stream?.close();
    stream = new EventSource(`/jobs/${encodeURIComponent(id)}/events`);
    const onEvent = (message) => {
      const data = JSON.parse(message.data);
      if (data.kind === undefined) { render(data); note(`watching: ${data.state}`); }
      else if (message.type === "progress") { progress(data.state, data.progress); note(`progress ${json(data.progress.meta)}`, data.at); }
      else { note(data.state, data.at); load().catch(() => {}); }
      if (TERMINAL.has(data.state)) { stream.close(); load().catch(() => {}); }
    };
    stream.addEventListener("state", onEvent);
    stream.addEventListener("progress", onEvent);
  };

  const act = (button, path) => button.addEventListener("click", async () => {
    const slot = $(".actions .error");
    slot.textContent = "";
    try { render(await api("POST", path)); note(`${button.textContent.toLowerCase()} requested`); watch(); }
    catch (error) { slot.textContent = error.message; }
  });
  act($("#cancel"), `/jobs/${encodeURIComponent(id)}/cancel`);
  act($("#retry"), `/jobs/${encodeURIComponent(id)}/retry`);
  load().then(watch, (error) => { $("#task").textContent = error.message; });
}

// ---- a workflow's page ---------------------------------------------------------------------------------

function graph(canvas, path, nodes) {
  const child = (index) => (path ? `${path}.${index}` : String(index));
  if (canvas.task !== undefined) {
    const step = nodes.get(path);
    const state = step ? step.state : "WAITING";
    const box = el(step ? "a" : "span", { class: `node state-${state}`, title: path || "root", data: { node: path, state } },
      el("strong", { textContent: canvas.task }), el("small", { textContent: state }));
    if (step) box.href = `/dashboard/jobs/${step.job_id}`;
    return box;
  }
  if (canvas.chain) return el("div", { class: "chain" }, ...canvas.chain.flatMap((c, i) => [i ? el("span", { class: "arrow", textContent: "→" }) : null, graph(c, child(i), nodes)]));
  if (canvas.group) return el("div", { class: "group" }, ...canvas.group.map((c, i) => graph(c, child(i), nodes)));
  const header = el("div", { class: "group" }, ...canvas.chord.header.map((c, i) => graph(c, child(i), nodes)));
  return el("div", { class: "chain chord" }, header, el("span", { class: "arrow", textContent: "⇒" }), graph(canvas.chord.body, child("b"), nodes));
}

function workflowPage(id) {
  $("#workflow-id").textContent = id;
  let pending = null;
  const render = (workflow) => {
    $("#state").replaceWith(Object.assign(stateBadge(workflow.state), { id: "state" }));
    const nodes = new Map(workflow.nodes.map((n) => [n.node ?? "", n]));
    $("#graph").replaceChildren(graph(workflow.canvas, "", nodes));
    $("#steps tbody").replaceChildren(...workflow.nodes.map((n) => el("tr", {}, el("td", { textContent: n.node || "(root)" }),
      el("td", {}, el("a", { href: `/dashboard/jobs/${n.job_id}`, textContent: n.job_id.slice(0, 12) })), el("td", { textContent: n.task }), el("td", {}, stateBadge(n.state)))));
    $("#error").hidden = !workflow.error;
    if (workflow.error) { $("#error-message").textContent = `${workflow.error.type}: ${workflow.error.message}`; $("#traceback").textContent = workflow.error.traceback || ""; }
    $("#cancel").disabled = TERMINAL.has(workflow.state);
  };
  const load = () => api("GET", `/workflows/${encodeURIComponent(id)}`).then(render);
  const reload = () => { pending ??= setTimeout(() => { pending = null; load().catch(() => {}); }, 100); };
  const stream = new EventSource(`/workflows/${encodeURIComponent(id)}/events`);
  const onEvent = (message) => {
    const data = JSON.parse(message.data);
    if (data.kind === undefined) render(data); else reload();
    if (data.id === id && TERMINAL.has(data.state)) { stream.close(); reload(); }
  };
  stream.addEventListener("state", onEvent);
  stream.addEventListener("progress", onEvent);
  $("#cancel").addEventListener("click", async () => {
    try { render(await api("POST", `/workflows/${encodeURIComponent(id)}/cancel`)); } catch (error) { $(".actions .error").textContent = error.message; }
  });
}

// ---- every page ----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#logout")?.addEventListener("click", async () => {
    await fetch("/dashboard/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    window.location.assign("/dashboard/login");
  });
  const { page, id } = document.body.dataset;
  if (page === "jobs") jobsPage();
  else if (page === "job") jobPage(id);
  else if (page === "workflow") workflowPage(id);
});
