// Forge's dashboard: a small client over /_api. No framework, no network beyond this gateway.
// Pages are hash routes (#/jobs, #/jobs/42, ...); each renders into <main>. The overview, the
// jobs list, a job's page, the queues and a workflow run's page follow their data over /ws (pushed when it changes, through the
// same client runtime `forge generate ts` writes); the other pages, and these where the node
// serves no live data, refresh every few seconds while shown.
"use strict";

const main = document.getElementById("main");
let refreshTimer = null;
let liveClient = null;
let liveStops = [];
// Set when a live subscription failed: this node serves no live data, so pages use timers.
let liveUnavailable = false;
let overviewCharts = null;

// ---- DOM helpers ---------------------------------------------------------------------------

/** An element: h("a", {href: "#/"}, "text", child, ...). Strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Replaces the page's content (arrays and nulls among `children` as h() takes them). */
function show(...children) {
  main.replaceChildren(h("div", {}, ...children));
}

function flash(message, bad) {
  const box = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("flash").append(box);
  setTimeout(() => box.remove(), bad ? 8000 : 4000);
}

function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return d.toLocaleString(undefined, { hour12: false });
}

function ago(t) {
  if (!t) return "";
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  if (s < 0) return "in " + span(-s);
  return span(s) + " ago";
}

function span(s) {
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 90) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function micros(us) {
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function stateBadge(state) {
  return h("span", { class: "state " + state, "data-state": state }, state);
}

function json(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "Nothing here.");
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: x.endsWith("#") ? "num" : "" }, x.replace(/#$/, ""))))), h("tbody", {}, rows));
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

// ---- API -----------------------------------------------------------------------------------

/** Calls /_api; throws an Error carrying the problem's detail. Shows the sign-in form on 401. */
async function api(path, options) {
  const opts = options || {};
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem("forge-token");
  if (token) headers.Authorization = "Bearer " + token;
  let body;
  if (opts.method === "POST") {
    headers["X-Forge-Csrf"] = "1";
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body || {});
  }
  const res = await fetch("/_api" + path, { method: opts.method || "GET", headers, body });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (res.status === 401) {
    sessionStorage.removeItem("forge-token");
    const detail = (data && data.detail) || "";
    signIn(token ? "That key or token was refused: " + detail : detail);
    throw new Error("sign in needed");
  }
  if (!res.ok) {
    const err = new Error((data && data.detail) || res.status + " " + res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

/** A POST that reports its outcome and re-renders the page. */
async function act(path, body, done) {
  try {
    const out = await api(path, { method: "POST", body });
    flash(done ? done(out) : "Done");
    await route();
  } catch (e) {
    flash(e.message, true);
  }
}

function signIn(reason) {
  stopRefresh();
  const input = h("input", { type: "password", name: "token", size: 50, placeholder: "forge_… API key or a JWT" });
  show(h("div", { class: "login" },
    h("h1", {}, "Sign in"),
    h("p", {}, reason || "The dashboard needs credentials with the admin role."),
    h("form", { onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem("forge-token", input.value.trim()); route(); } },
      h("label", {}, "API key or JWT", input), h("div", { class: "actions" }, h("button", { class: "primary" }, "Sign in")))));
}

// ---- Charts --------------------------------------------------------------------------------

const COLORS = ["#ea580c", "#2563eb", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#4b5563"];

/** A line chart of [{name, points: [[ms, value], ...]}], as SVG. */
function lineChart(title, lines, unit) {
  const W = 600, H = 170, L = 48, R = 8, T = 8, B = 22;
  const all = lines.flatMap((l) => l.points);
  const box = h("div", { class: "chart", "data-chart": title }, h("h3", {}, title));
  if (!all.length) {
    box.append(h("p", { class: "muted" }, "No data in this range yet."));
    return box;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const y1 = Math.max(...ys, 0) * 1.1 || 1;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - y / y1) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = (y1 * i) / 4, y = Y(v);
    g.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#e5e5e0" }));
    g.append(svg("text", { x: L - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#6b6b66" }, fmt(v, unit)));
  }
  for (const x of [x0, (x0 + x1) / 2, x1]) {
    const t = new Date(x).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
    g.append(svg("text", { x: X(x), y: H - 6, "text-anchor": "middle", "font-size": 10, fill: "#6b6b66" }, t));
  }
  lines.forEach((l, i) => {
    if (!l.points.length) return;
    const d = l.points.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1)).join(" ");
    g.append(svg("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.6 }));
    if (l.points.length < 40) {
      for (const p of l.points) g.append(svg("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.2, fill: COLORS[i % COLORS.length] }));
    }
  });
  box.append(g, h("div", { class: "legend" }, lines.map((l, i) => h("span", {}, h("i", { style: "background:" + COLORS[i % COLORS.length] }), l.name))));
  return box;
}

function fmt(v, unit) {
  if (unit === "s") return v < 1 ? (v * 1000).toFixed(v < 0.01 ? 1 : 0) + "ms" : v.toFixed(1) + "s";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** Lines for one metric: counters and gauges summed per step over the chosen label, histograms as a quantile. */
async function metricLines(name, range, opts) {
  const o = opts || {};
  const until = new Date(), since = new Date(until.getTime() - range.ms);
  const labels = (o.labels || []).map((l) => "&label=" + encodeURIComponent(l)).join("");
  const data = await api(`/metrics/${encodeURIComponent(name)}?since=${since.toISOString()}&until=${until.toISOString()}&step=${range.step}${labels}`);
  const groups = new Map();
  for (const s of data.series) {
    const key = o.by ? (s.labels[o.by] || "") : (o.name || name);
    const g = groups.get(key) || new Map();
    for (const p of s.points) {
      const t = new Date(p.at).getTime();
      const v = s.kind === "histogram" ? (p[o.quantile || "p95"] || 0) : p.value;
      g.set(t, s.kind === "histogram" ? Math.max(g.get(t) || 0, v) : (g.get(t) || 0) + v);
    }
    groups.set(key, g);
  }
  return [...groups.entries()].map(([key, g]) => ({ name: key, points: [...g.entries()].sort((a, b) => a[0] - b[0]) }));
}

const RANGES = { hour: { ms: 3600e3, step: "1m" }, day: { ms: 86400e3, step: "15m" } };

// ---- Pages ---------------------------------------------------------------------------------

async function overview(params, pushed) {
  const range = RANGES[params.get("range")] || RANGES.hour;
  const data = pushed || await api("/overview");
  document.getElementById("project").textContent = data.project;
  const counts = data.counts || {};
  const states = ["available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled"];
  const leader = data.nodes.find((n) => n.leader);
  // A live push re-renders the counts, nodes and failures, and keeps the charts.
  const charts = pushed && overviewCharts ? overviewCharts : h("div", { class: "grid2" });
  const disabled = data.webhooks_disabled || [];
  const view = h("div", {},
    disabled.length ? h("div", { class: "error-box", "data-banner": "webhooks-disabled" },
      h("strong", {}, disabled.length === 1 ? "A webhook endpoint was disabled" : disabled.length + " webhook endpoints were disabled"),
      disabled.map((w) => h("div", {}, h("a", { href: "#/webhooks/" + w.id }, w.client + ": " + w.url), " — ", w.disabled_reason || "", " ", ago(w.disabled_at))),
      h("div", {}, "Open an endpoint to recover the events it missed.")) : null,
    h("h1", {}, "Overview"),
    h("div", { class: "cards" }, states.map((s) =>
      h("a", { class: "card", href: "#/jobs?state=" + s, style: "text-decoration:none;color:inherit", "data-count": s },
        h("div", { class: "muted" }, s), h("div", { class: "n" }, (counts[s] || 0).toLocaleString())))),
    h("div", { class: "actions" }, "Charts: ",
      h("a", { href: "#/?range=hour" }, "last hour"), h("a", { href: "#/?range=day" }, "last day")),
    charts,
    h("h2", {}, "Nodes"),
    table(["Node", "Roles", "Status", "Heartbeat", "Running jobs#", "Leader"], data.nodes.map((n) =>
      h("tr", {}, h("td", { class: "mono" }, n.id), h("td", {}, (n.roles || []).join(", ")), h("td", {}, n.status),
        h("td", {}, ago(n.last_heartbeat)), h("td", { class: "num" }, n.running_jobs), h("td", {}, n.leader ? "scheduler leader" : "")))),
    h("p", { class: "muted" }, leader ? "Leader: " + leader.id : "No node leads right now."),
    h("h2", {}, "Recent failures"),
    table(["Job", "Kind", "Queue", "State", "Attempt", "Error", "When"], data.recent_failures.map((j) =>
      h("tr", {}, h("td", {}, h("a", { href: "#/jobs/" + j.id }, "#" + j.id)), h("td", {}, j.kind), h("td", {}, j.queue),
        h("td", {}, stateBadge(j.state)), h("td", {}, j.attempt + "/" + j.max_attempts), h("td", { class: "mono" }, j.error || ""),
        h("td", {}, ago(j.at)))), "No failures."));
  show(view);
  if (pushed) return;
  overviewCharts = charts;
  const loadCharts = () => {
  charts.replaceChildren();
  const specs = [
    ["Jobs completed and failed per step", async () => [
      ...(await metricLines("forge_jobs_completed_total", range, { name: "completed" })),
      ...(await metricLines("forge_jobs_failed_total", range, { name: "failed" })),
      ...(await metricLines("forge_jobs_discarded_total", range, { name: "discarded" })),
    ]],
    ["Queue depth (available)", () => metricLines("forge_queue_depth", range, { labels: ["state:available"], by: "queue" })],
    ["Pickup latency p95", () => metricLines("forge_job_pickup_seconds", range, { by: "queue" }), "s"],
    ["Job duration p95", () => metricLines("forge_job_duration_seconds", range, { by: "kind" }), "s"],
  ];
  for (const [title, load, unit] of specs) {
    const slot = h("div", {}, h("div", { class: "chart" }, h("h3", {}, title), h("p", { class: "muted" }, "Loading…")));
    charts.append(slot);
    load().then((lines) => slot.replaceChildren(lineChart(title, lines, unit))).catch((e) => slot.replaceChildren(h("div", { class: "error-box" }, e.message)));
  }
  };
  loadCharts();
  live("forge:overview", null, (d) => overview(params, d), 10000, () => overview(params), [30000, loadCharts]);
}

async function jobsPage(params) {
  const filter = Object.fromEntries(["state", "kind", "queue", "tag", "args", "since"].map((k) => [k, params.get(k) || ""]));
  const within = params.get("within") || "";
  const kinds = await api("/job-kinds");
  const field = (name, el) => h("label", {}, name, el);
  const stateSel = h("select", { name: "state" }, h("option", { value: "" }, "any"),
    ["scheduled", "available", "running", "retryable", "completed", "discarded", "cancelled"].map((s) => h("option", { value: s, selected: s === filter.state }, s)));
  const kindSel = h("select", { name: "kind" }, h("option", { value: "" }, "any"),
    kinds.kinds.map((k) => h("option", { value: k.kind, selected: k.kind === filter.kind }, k.kind)));
  const inputs = {
    queue: h("input", { name: "queue", value: filter.queue, size: 10 }),
    tag: h("input", { name: "tag", value: filter.tag, size: 10 }),
    args: h("input", { name: "args", value: filter.args, size: 24, placeholder: '{"user": 7}' }),
  };
  const windows = { "": "any time", "1h": "last hour", "24h": "last day", "168h": "last week" };
  const withinSel = h("select", { name: "within" }, Object.entries(windows).map(([v, label]) => h("option", { value: v, selected: v === within }, label)));
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const hours = parseInt(withinSel.value, 10);
    const since = hours ? new Date(Date.now() - hours * 3600e3).toISOString() : "";
    location.hash = "#/jobs" + query({ state: stateSel.value, kind: kindSel.value, queue: inputs.queue.value, tag: inputs.tag.value,
      args: inputs.args.value, within: withinSel.value, since });
  } }, field("State", stateSel), field("Kind", kindSel), field("Queue", inputs.queue), field("Tag", inputs.tag),
    field("Arguments contain", inputs.args), field("Created", withinSel), h("button", { class: "primary" }, "Filter"));
  const bulk = h("div", { class: "actions" },
    h("button", { "data-action": "bulk-retry", onclick: () => confirm("Retry every discarded or cancelled job this filter selects?") &&
      act("/jobs/retry", filter, (o) => `Retried ${o.retried} jobs`) }, "Retry all matching"),
    h("button", { class: "danger", "data-action": "bulk-cancel", onclick: () => confirm("Cancel every unfinished job this filter selects?") &&
      act("/jobs/cancel", filter, (o) => `Cancelled ${o.cancelled} jobs`) }, "Cancel all matching"));
  const slot = h("div", {});
  show(h("h1", {}, "Jobs"), form, bulk, slot);
  const before = params.get("before") || "";
  const render = (page) => {
    const rows = page.jobs.map((j) => h("tr", { "data-job": j.id, "data-kind": j.kind },
      h("td", {}, h("a", { href: "#/jobs/" + j.id }, "#" + j.id)), h("td", {}, j.kind), h("td", {}, j.queue),
      h("td", {}, stateBadge(j.state)), h("td", { class: "num" }, j.attempt + "/" + j.max_attempts),
      h("td", { class: "mono" }, JSON.stringify(j.args).slice(0, 80)), h("td", {}, ago(j.created_at)),
      h("td", {}, j.finalized_at ? ago(j.finalized_at) : j.state === "scheduled" ? "runs " + ago(j.run_at) : "")));
    const next = page.next ? h("a", { href: "#/jobs" + query({ ...filter, within, before: page.next }) }, "Older →") : null;
    const first = before ? h("a", { href: "#/jobs" + query({ ...filter, within }) }, "← Newest") : null;
    slot.replaceChildren(table(["Job", "Kind", "Queue", "State", "Attempts#", "Arguments", "Created", "Finished"], rows, "No jobs match."),
      h("div", { class: "pager" }, first, next));
  };
  const load = async () => render(await api("/jobs" + query({ ...filter, before, limit: 50 })));
  await load();
  // The newest page follows the jobs it lists; an older page stays as it was read.
  if (!before) live("forge:jobs", { ...filter, limit: 50 }, render, 2000, load);
}

async function jobPage(id, pushed) {
  const j = pushed ? pushed.job : await api("/jobs/" + id);
  const actions = h("div", { class: "actions" });
  const button = (label, path, cls, confirmText) => h("button", { class: cls || "", "data-action": label.toLowerCase().replace(/ /g, "-"),
    onclick: () => (!confirmText || confirm(confirmText)) && act(`/jobs/${id}/${path}`, {}, () => `${label}: job #${id}`) }, label);
  if (["discarded", "cancelled"].includes(j.state)) actions.append(button("Retry", "retry", "primary"));
  if (["scheduled", "retryable"].includes(j.state)) actions.append(button("Run now", "run", "primary"));
  if (["scheduled", "available", "retryable", "running"].includes(j.state)) actions.append(button("Cancel", "cancel", "danger", "Cancel this job?"));
  if (j.state !== "running") actions.append(h("button", { class: "danger", "data-action": "delete", onclick: async () => {
    if (!confirm("Delete this job for good?")) return;
    try { await api(`/jobs/${id}/delete`, { method: "POST" }); flash(`Deleted job #${id}`); location.hash = "#/jobs"; } catch (e) { flash(e.message, true); }
  } }, "Delete"));
  const progress = j.progress && j.progress.percent !== undefined
    ? h("span", {}, h("span", { class: "progress" }, h("span", { style: `width:${j.progress.percent}%` })), ` ${j.progress.percent}% ${j.progress.message || ""}`)
    : "";
  const duration = j.attempted_at && j.finalized_at ? span((new Date(j.finalized_at) - new Date(j.attempted_at)) / 1000) : "";
  const errors = (j.errors || []).slice().reverse();
  const trace = h("div", {}, h("p", { class: "muted" }, "Loading trace…"));
  const logs = h("div", {}, h("p", { class: "muted" }, "Loading logs…"));
  show(
    h("h1", {}, `Job #${j.id} `, stateBadge(j.state)),
    actions,
    h("dl", { class: "kv" },
      h("dt", {}, "Kind"), h("dd", {}, j.kind), h("dt", {}, "Queue"), h("dd", {}, j.queue),
      h("dt", {}, "Priority"), h("dd", {}, j.priority), h("dt", {}, "Attempts"), h("dd", {}, `${j.attempt} of ${j.max_attempts}`),
      h("dt", {}, "Created"), h("dd", {}, when(j.created_at)), h("dt", {}, "Run at"), h("dd", {}, when(j.run_at)),
      h("dt", {}, "Last attempt"), h("dd", {}, when(j.attempted_at)), h("dt", {}, "Finished"), h("dd", {}, when(j.finalized_at), duration && ` (last attempt ${duration})`),
      h("dt", {}, "Node"), h("dd", { class: "mono" }, j.attempted_by || ""), h("dt", {}, "Progress"), h("dd", {}, progress),
      h("dt", {}, "Tags"), h("dd", {}, (j.tags || []).join(", ")), h("dt", {}, "Trace"), h("dd", {}, h("a", { class: "mono", href: "#/traces/" + j.trace_id }, j.trace_id))),
    h("h2", {}, "Arguments"), json(j.args),
    j.output !== null ? [h("h2", {}, "Output"), json(j.output)] : null,
    h("h2", {}, `Errors (${errors.length})`),
    errors.length ? errors.map((e) => h("div", { class: "error-box", "data-error-attempt": e.attempt }, h("strong", {}, `Attempt ${e.attempt} · ${when(e.at)}`), "\n", e.message, e.trace ? "\n" + e.trace : ""))
      : h("p", { class: "muted" }, "No failed attempts."),
    h("h2", {}, "Logs"), logs,
    h("h2", {}, "Trace"), trace);
  if (pushed) logs.replaceChildren(logTable(pushed.logs.entries));
  else api(`/jobs/${id}/logs?limit=200`).then((page) => logs.replaceChildren(logTable(page.entries))).catch((e) => logs.replaceChildren(h("div", { class: "error-box" }, e.message)));
  api(`/jobs/${id}/trace`).then((t) => trace.replaceChildren(waterfall(t))).catch((e) => trace.replaceChildren(h("p", { class: "muted" }, e.status === 404 ? "No spans for this job's trace yet: it has not run." : e.message)));
  // State, progress, new errors and log lines are pushed while the job is not finished.
  if (!pushed && ["available", "running", "scheduled", "retryable"].includes(j.state)) {
    live("forge:job", { id: Number(id) }, (d) => jobPage(id, d), 2000, () => jobPage(id));
  }
}

function logTable(entries) {
  return table(["Time", "Level", "Message", "Fields", "Where"], entries.map((l) => h("tr", { "data-log": l.id },
    h("td", { class: "mono" }, when(l.at)), h("td", {}, h("span", { class: "state " + (l.level === "error" ? "error" : l.level === "warn" ? "warn" : "") }, l.level)),
    h("td", {}, l.message), h("td", { class: "mono" }, Object.keys(l.fields || {}).length ? JSON.stringify(l.fields) : ""),
    h("td", { class: "mono" }, l.job_id ? h("a", { href: "#/jobs/" + l.job_id }, "job #" + l.job_id) : l.function || l.cron || l.target,
      l.trace_id ? [" · ", h("a", { href: "#/traces/" + l.trace_id }, "trace")] : null))), "No logs.");
}

function waterfall(t) {
  const t0 = new Date(t.started_at).getTime() * 1000;
  const total = Math.max(t.duration_us, 1);
  const rows = [];
  const walk = (s, depth) => {
    const start = new Date(s.started_at).getTime() * 1000 - t0;
    const left = Math.max(0, (start / total) * 100), width = Math.max(0.3, (s.duration_us / total) * 100);
    rows.push(h("div", { class: "row", "data-span": s.name },
      h("div", { class: "name", style: `padding-left:${depth}rem`, title: JSON.stringify(s.attributes) },
        s.name, " ", h("span", { class: "muted" }, micros(s.duration_us), s.job_id ? [" · ", h("a", { href: "#/jobs/" + s.job_id }, "#" + s.job_id)] : "")),
      h("div", { class: "bar-track" }, h("div", { class: "bar" + (s.status === "error" ? " error" : ""), style: `left:${left}%;width:${Math.min(width, 100 - left)}%` }))));
    for (const c of s.children) walk(c, depth + 1);
  };
  t.roots.forEach((r) => walk(r, 0));
  return h("div", {}, h("p", { class: "muted" }, `${t.span_count} spans · ${micros(t.duration_us)} · started ${when(t.started_at)}`), h("div", { class: "waterfall" }, rows));
}

async function dispatchPage() {
  const kinds = (await api("/job-kinds")).kinds;
  const kind = h("select", { name: "kind" }, kinds.map((k) => h("option", { value: k.kind }, k.kind)));
  const args = h("textarea", { name: "args", spellcheck: "false" }, "{}");
  const queue = h("input", { name: "queue", placeholder: "the kind's queue" });
  const priority = h("select", { name: "priority" }, h("option", { value: "" }, "the kind's"),
    ["0 critical", "1 high", "2 normal", "3 low", "4 background"].map((p) => h("option", { value: p[0] }, p)));
  const runAt = h("input", { name: "run_at", type: "datetime-local" });
  const out = h("div", { id: "dispatch-result" });
  const submit = async (e) => {
    e.preventDefault();
    out.replaceChildren();
    let parsed;
    try { parsed = JSON.parse(args.value || "{}"); } catch (err) {
      out.replaceChildren(h("div", { class: "error-box" }, "Arguments are not JSON: " + err.message));
      return;
    }
    const body = { kind: kind.value, args: parsed };
    if (queue.value) body.queue = queue.value;
    if (priority.value) body.priority = Number(priority.value);
    if (runAt.value) body.run_at = new Date(runAt.value).toISOString();
    try {
      const r = await api("/jobs", { method: "POST", body });
      out.replaceChildren(h("p", {}, "Dispatched ", h("a", { href: "#/jobs/" + r.id, "data-dispatched": r.id }, `job #${r.id}`), ` (${r.kind} on ${r.queue}).`));
    } catch (err) {
      out.replaceChildren(h("div", { class: "error-box" }, err.message));
    }
  };
  show(h("h1", {}, "Dispatch a job"),
    kinds.length ? h("form", { onsubmit: submit, style: "max-width:40rem" },
      h("label", {}, "Kind", kind), h("label", {}, "Arguments (JSON)", args),
      h("div", { class: "filters" }, h("label", {}, "Queue", queue), h("label", {}, "Priority", priority), h("label", {}, "Run at", runAt)),
      h("div", { class: "actions" }, h("button", { class: "primary" }, "Dispatch")), out)
      : h("p", { class: "muted" }, "This node has no job kinds registered."));
}

async function cronsPage() {
  const data = await api("/crons");
  const rows = data.crons.map((c) => h("tr", { "data-cron": c.name },
    h("td", {}, h("strong", {}, c.name), h("div", { class: "muted" }, c.job_kind)),
    h("td", { class: "mono" }, c.expression, h("div", { class: "muted" }, c.timezone)),
    h("td", {}, c.paused_at ? h("span", { class: "state paused" }, "paused") : "active"),
    h("td", {}, c.next.slice(0, 3).map((t) => h("div", {}, when(t), " ", h("span", { class: "muted" }, ago(t))))),
    h("td", {}, c.runs.slice(0, 5).map((r) => h("div", {}, h("span", { class: "muted" }, when(r.scheduled_at)), " ", r.status, " ",
      r.job_id ? h("a", { href: "#/jobs/" + r.job_id }, "#" + r.job_id) : "", " ", r.job_state ? stateBadge(r.job_state) : "",
      r.job_error ? h("div", { class: "mono", style: "color:var(--bad)" }, r.job_error) : null))),
    h("td", {}, h("div", { class: "actions" },
      h("button", { "data-action": "trigger", onclick: () => act(`/crons/${encodeURIComponent(c.name)}/trigger`, {}, (o) => `Triggered ${c.name}: job #${o.job_id}`) }, "Trigger now"),
      c.paused_at ? h("button", { "data-action": "resume", onclick: () => act(`/crons/${encodeURIComponent(c.name)}/resume`, {}, () => `Resumed ${c.name}`) }, "Resume")
        : h("button", { "data-action": "pause", onclick: () => act(`/crons/${encodeURIComponent(c.name)}/pause`, {}, () => `Paused ${c.name}`) }, "Pause")))));
  show(h("h1", {}, "Crons"), table(["Cron", "Schedule", "Status", "Next runs", "Latest runs", ""], rows, "No crons are registered."));
}

async function queuesPage(pushed) {
  const data = pushed || await api("/queues");
  const states = ["available", "scheduled", "running", "retryable"];
  const rows = data.queues.map((q) => h("tr", { "data-queue": q.name },
    h("td", {}, h("a", { href: "#/jobs?queue=" + encodeURIComponent(q.name) }, q.name)),
    states.map((s) => h("td", { class: "num" }, (q.depth[s] || 0).toLocaleString())),
    h("td", { class: "num" }, q.concurrency === null ? "—" : q.concurrency),
    h("td", {}, q.paused_at ? h("span", { class: "state paused", "data-paused": "true" }, "paused " + ago(q.paused_at)) : "running"),
    h("td", {}, q.paused_at
      ? h("button", { "data-action": "resume", onclick: () => act(`/queues/${encodeURIComponent(q.name)}/resume`, {}, () => `Resumed ${q.name}`) }, "Resume")
      : h("button", { "data-action": "pause", onclick: () => act(`/queues/${encodeURIComponent(q.name)}/pause`, {}, () => `Paused ${q.name}`) }, "Pause"))));
  show(h("h1", {}, "Queues"), table(["Queue", ...states.map((s) => s + "#"), "Concurrency (this node)#", "Status", ""], rows, "No queues yet."),
    h("p", { class: "muted" }, "A paused queue keeps its jobs: no node claims them until it is resumed. Running jobs finish."));
  if (!pushed) live("forge:queues", null, (d) => queuesPage(d), 5000, () => queuesPage());
}

async function nodesPage() {
  const data = await api("/nodes");
  const mib = (b) => (b === null || b === undefined ? "—" : (b / 1048576).toFixed(0) + " MiB");
  const pct = (p) => (p === null || p === undefined ? "—" : p.toFixed(1) + "%");
  show(h("h1", {}, "Nodes"), table(["Node", "Host", "Roles", "Capabilities", "Version", "Status", "Started", "Heartbeat", "Running jobs#", "CPU#", "Memory#", "Leader"],
    data.nodes.map((n) => h("tr", { "data-node": n.id }, h("td", { class: "mono" }, n.id), h("td", {}, n.hostname), h("td", {}, (n.roles || []).join(", ")),
      h("td", {}, (n.capabilities || []).join(", ")), h("td", {}, n.version), h("td", {}, n.status), h("td", {}, ago(n.started_at)),
      h("td", {}, span(n.heartbeat_age_s) + " ago"), h("td", { class: "num" }, n.running_jobs), h("td", { class: "num" }, pct(n.cpu_percent)),
      h("td", { class: "num" }, mib(n.memory_bytes)), h("td", {}, n.leader ? "scheduler" : "")))));
  every(5000, nodesPage);
}

async function logsPage(params) {
  const f = Object.fromEntries(["level", "q", "job", "trace", "before_at", "before_id"].map((k) => [k, params.get(k) || ""]));
  const level = h("select", { name: "level" }, ["", "error", "warn", "info", "debug", "trace"].map((l) => h("option", { value: l, selected: l === f.level }, l || "any")));
  const q = h("input", { name: "q", value: f.q, placeholder: "text" });
  const job = h("input", { name: "job", value: f.job, size: 8 });
  const trace = h("input", { name: "trace", value: f.trace, size: 34 });
  const page = await api("/logs" + query({ ...f, limit: 100 }));
  const next = page.next ? h("a", { href: "#/logs" + query({ level: f.level, q: f.q, job: f.job, trace: f.trace, before_at: page.next.at, before_id: page.next.id }) }, "Older →") : null;
  show(h("h1", {}, "Logs"),
    h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); location.hash = "#/logs" + query({ level: level.value, q: q.value, job: job.value, trace: trace.value }); } },
      h("label", {}, "Level at least", level), h("label", {}, "Text", q), h("label", {}, "Job", job), h("label", {}, "Trace", trace), h("button", { class: "primary" }, "Search")),
    logTable(page.entries), h("div", { class: "pager" }, next));
}

async function tracesPage(id) {
  const input = h("input", { name: "trace", size: 36, value: id || "", placeholder: "32 hex digits" });
  const slot = h("div", {});
  show(h("h1", {}, "Traces"),
    h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); location.hash = "#/traces/" + input.value.trim(); } }, h("label", {}, "Trace id", input), h("button", { class: "primary" }, "Open")),
    slot);
  if (!id) {
    slot.append(h("p", { class: "muted" }, "Open a trace from a job, a log line, or by its id."));
    return;
  }
  try { slot.replaceChildren(waterfall(await api("/traces/" + id))); } catch (e) { slot.replaceChildren(h("div", { class: "error-box" }, e.message)); }
}

async function metricsPage(params) {
  const names = (await api("/metrics")).names;
  const name = params.get("name") || names[0] || "";
  const rangeKey = params.get("range") || "hour";
  const by = params.get("by") || "";
  const sel = h("select", { name: "name" }, names.map((n) => h("option", { value: n, selected: n === name }, n)));
  const range = h("select", { name: "range" }, Object.keys(RANGES).map((r) => h("option", { value: r, selected: r === rangeKey }, "last " + r)));
  const byInput = h("input", { name: "by", value: by, size: 10, placeholder: "label" });
  const slot = h("div", {});
  show(h("h1", {}, "Metrics"),
    h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); location.hash = "#/metrics" + query({ name: sel.value, range: range.value, by: byInput.value }); } },
      h("label", {}, "Metric", sel), h("label", {}, "Range", range), h("label", {}, "Split by label", byInput), h("button", { class: "primary" }, "Show")),
    slot);
  if (!name) { slot.append(h("p", { class: "muted" }, "No metrics stored yet.")); return; }
  const lines = await metricLines(name, RANGES[rangeKey] || RANGES.hour, { by: by || null, name });
  slot.replaceChildren(lineChart(name + (by ? " by " + by : ""), lines, name.endsWith("_seconds") ? "s" : ""));
}

async function functionsPage() {
  const data = await api("/functions");
  show(h("h1", {}, "Functions"), table(["Name", "Kind", "Arguments", "Output", "Access", "Timeout"],
    data.functions.map((f) => h("tr", {}, h("td", { class: "mono" }, f.name), h("td", {}, f.kind), h("td", { class: "mono" }, f.args_type),
      h("td", { class: "mono" }, f.output_type), h("td", { class: "mono" }, typeof f.access === "string" ? f.access : JSON.stringify(f.access)),
      h("td", {}, f.timeout_ms !== undefined ? f.timeout_ms + " ms" : JSON.stringify(f.timeout)))), "No functions are registered."));
}

// ---- Job API: clients and webhooks ----------------------------------------------------------

async function clientsPage() {
  const data = await api("/clients");
  const rows = data.clients.map((c) => h("tr", { "data-client": c.name },
    h("td", {}, h("strong", {}, c.name), h("div", { class: "muted mono" }, c.id)),
    h("td", {}, ago(c.created_at)),
    h("td", {}, c.disabled_at ? h("span", { class: "state error" }, "disabled") : "active"),
    h("td", { class: "num" }, c.jobs.toLocaleString()),
    h("td", { class: "num" }, h("a", { href: "#/webhooks" }, c.endpoints)),
    h("td", {}, c.keys.map((k) => h("div", { "data-key": k.prefix },
      h("span", { class: "mono" }, k.prefix + "…"), " ", k.name, " ",
      h("span", { class: "muted" }, (k.scopes.length ? k.scopes.join(", ") : "all scopes") + (k.last_used_at ? ", used " + ago(k.last_used_at) : ", never used")),
      k.revoked_at ? h("span", { class: "state cancelled" }, new Date(k.revoked_at) > new Date() ? "revoked " + when(k.revoked_at) : "revoked") : null)))));
  show(h("h1", {}, "Clients"), table(["Client", "Created", "Status", "Jobs#", "Webhooks#", "Keys (prefixes)"], rows,
    "No clients yet: an operator creates them with POST /v1/clients."),
    h("p", { class: "muted" }, "Clients of the job API (/v1). Keys are shown by prefix only; their secrets are never stored."));
}

async function webhooksPage() {
  const data = await api("/webhooks");
  const rows = data.endpoints.map((w) => h("tr", { "data-endpoint": w.id },
    h("td", {}, h("a", { href: "#/webhooks/" + w.id }, w.url), h("div", { class: "muted" }, w.client)),
    h("td", {}, w.events.length ? w.events.join(", ") : "all events"),
    h("td", {}, w.disabled_at ? h("span", { class: "state error", "data-disabled": "true" }, "disabled") : w.failing_since ? h("span", { class: "state warn" }, "failing since " + ago(w.failing_since)) : h("span", { class: "state completed" }, "active"),
      w.disabled_reason ? h("div", { class: "muted" }, w.disabled_reason) : null),
    h("td", {}, w.last_success_at ? ago(w.last_success_at) : "never"),
    h("td", { class: "num" }, w.ok_24h), h("td", { class: "num" }, w.failed_24h),
    h("td", {}, endpointActions(w))));
  show(h("h1", {}, "Webhooks"), table(["Endpoint", "Events", "Status", "Last success", "OK (24 h)#", "Failed (24 h)#", ""], rows, "No webhook endpoints yet."));
  every(10000, webhooksPage);
}

function endpointActions(w) {
  const id = encodeURIComponent(w.id);
  return h("div", { class: "actions" },
    w.disabled_at
      ? h("button", { "data-action": "enable", onclick: () => act(`/webhooks/${id}/enable`, {}, () => "Enabled " + w.url) }, "Enable")
      : h("button", { "data-action": "disable", onclick: () => act(`/webhooks/${id}/disable`, {}, () => "Disabled " + w.url) }, "Disable"));
}

async function webhookPage(id, params) {
  const data = await api(`/webhooks/${encodeURIComponent(id)}` + query({ cursor: params.get("cursor") }));
  const w = data.endpoint;
  const since = h("input", { type: "datetime-local", name: "since", value: new Date(Date.now() - 86400e3 - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 16) });
  const recover = h("form", { class: "actions", onsubmit: (e) => {
    e.preventDefault();
    act(`/webhooks/${encodeURIComponent(w.id)}/recover`, { since: new Date(since.value).toISOString() }, (o) => `Re-queued ${o.queued} event${o.queued === 1 ? "" : "s"}`);
  } }, "Recover the events since ", since, h("button", { type: "submit", "data-action": "recover" }, "Recover"));
  const rows = data.deliveries.data.map((d) => h("tr", { "data-delivery": d.id },
    h("td", {}, when(d.at)), h("td", { class: "num" }, d.event_id),
    h("td", {}, d.job_id ? h("a", { href: "#/jobs/" + d.job_id }, "#" + d.job_id) : ""),
    h("td", { class: "num" }, d.attempt),
    h("td", {}, d.status === null ? "—" : h("span", { class: "state " + (d.status >= 200 && d.status < 300 ? "completed" : "error") }, d.status)),
    h("td", { class: "num" }, d.latency_ms === null ? "—" : d.latency_ms + " ms"),
    h("td", { class: "mono" }, d.error || ""),
    h("td", {}, h("button", { "data-action": "resend", onclick: () => act(`/webhooks/${encodeURIComponent(w.id)}/resend`, { event_id: d.event_id }, () => `Event ${d.event_id} queued again`) }, "Resend"))));
  const next = data.deliveries.next_cursor;
  show(h("h1", {}, "Webhook endpoint"),
    w.disabled_at ? h("div", { class: "error-box", "data-banner": "endpoint-disabled" }, "Disabled " + ago(w.disabled_at) + ": " + (w.disabled_reason || "")) : null,
    h("dl", { class: "kv" }, h("dt", {}, "URL"), h("dd", { class: "mono" }, w.url), h("dt", {}, "Events"), h("dd", {}, w.events.length ? w.events.join(", ") : "all"),
      h("dt", {}, "Last success"), h("dd", {}, w.last_success_at ? ago(w.last_success_at) : "never"),
      h("dt", {}, "Failing since"), h("dd", {}, w.failing_since ? ago(w.failing_since) : "—")),
    endpointActions(w), recover,
    h("h2", {}, "Delivery attempts"),
    table(["When", "Event#", "Job", "Attempt#", "Status", "Latency#", "Error", ""], rows, "Nothing delivered yet."),
    next ? h("p", {}, h("a", { href: `#/webhooks/${encodeURIComponent(w.id)}?cursor=${next}` }, "Older attempts")) : null);
}

// ---- Workflows -----------------------------------------------------------------------------

const RUN_STATUSES = ["pending", "running", "waiting", "blocked", "completed", "failed", "cancelled"];

function runBadge(status) {
  const map = { pending: "available", waiting: "scheduled", blocked: "retryable", failed: "discarded" };
  return h("span", { class: "state " + (map[status] || status), "data-run-status": status }, status);
}

async function workflowsPage(params) {
  const filter = Object.fromEntries(["workflow", "status", "key"].map((k) => [k, params.get(k) || ""]));
  const before = params.get("before") || "";
  const statusSel = h("select", { name: "status" }, h("option", { value: "" }, "any"),
    RUN_STATUSES.map((s) => h("option", { value: s, selected: s === filter.status }, s)));
  const workflow = h("input", { name: "workflow", value: filter.workflow, size: 16 });
  const key = h("input", { name: "key", value: filter.key, size: 16 });
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    location.hash = "#/workflows" + query({ workflow: workflow.value, status: statusSel.value, key: key.value });
  } }, h("label", {}, "Workflow", workflow), h("label", {}, "Status", statusSel), h("label", {}, "Key", key),
    h("button", { class: "primary" }, "Filter"));
  const slot = h("div", {});
  show(h("h1", {}, "Workflow runs"), form, slot);
  const load = async () => {
    const page = await api("/workflows" + query({ ...filter, before, limit: 50 }));
    const rows = page.runs.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, h("a", { href: "#/workflows/" + r.id }, "#" + r.id)), h("td", {}, r.workflow + " v" + r.version),
      h("td", {}, runBadge(r.status)), h("td", { class: "mono" }, r.run_key || ""),
      h("td", {}, r.blocked_reason || (r.waiting_for ? "event " + r.waiting_for : r.status === "waiting" ? "until " + when(r.run_at) : "")),
      h("td", {}, ago(r.created_at)), h("td", {}, r.finalized_at ? ago(r.finalized_at) : "")));
    const next = page.next ? h("a", { href: "#/workflows" + query({ ...filter, before: page.next }) }, "Older →") : null;
    const first = before ? h("a", { href: "#/workflows" + query(filter) }, "← Newest") : null;
    slot.replaceChildren(table(["Run", "Workflow", "Status", "Key", "Waiting for / blocked", "Started", "Finished"], rows, "No runs match."),
      h("div", { class: "pager" }, first, next));
  };
  await load();
  if (!before) every(2000, load);
}

async function workflowPage(id, pushed) {
  const d = pushed || await api("/workflows/" + id);
  const r = d.run;
  const actions = h("div", { class: "actions" });
  if (!["completed", "failed", "cancelled"].includes(r.status)) {
    actions.append(h("button", { class: "danger", "data-action": "cancel-run", onclick: () => confirm("Cancel this run? Its compensations run.") &&
      act(`/workflows/${id}/cancel`, {}, () => `Cancel requested: run #${id}`) }, "Cancel"));
    const name = h("input", { name: "event", size: 16, placeholder: "event name", value: r.waiting_for || "" });
    const payload = h("input", { name: "payload", size: 24, placeholder: '{"ok": true}' });
    actions.append(h("form", { class: "inline", "data-action": "send-event", onsubmit: (e) => {
      e.preventDefault();
      let body;
      try { body = payload.value.trim() ? JSON.parse(payload.value) : null; } catch (err) { return flash("The payload is not JSON: " + err.message, true); }
      act(`/workflows/${id}/events`, { name: name.value, payload: body }, (o) => o.delivered ? `Event ${name.value} sent` : `Run #${id} already had an event ${name.value}`);
    } }, name, payload, h("button", {}, "Send event")));
  }
  if (["failed", "cancelled"].includes(r.status)) {
    actions.append(h("button", { class: "primary", "data-action": "retry-run", onclick: () =>
      act(`/workflows/${id}/retry`, {}, (o) => o.from_step === null ? `Retried run #${id}` : `Retried run #${id} from step ${o.from_step}`) }, "Retry from the failed step"));
  }
  if (r.status === "blocked") {
    actions.append(h("button", { class: "primary", "data-action": "resume", onclick: () =>
      act(`/workflows/${id}/resume`, {}, () => `Resumed run #${id}`) }, "Resume (replay all)"));
    actions.append(h("button", { "data-action": "resume-from", onclick: () => confirm(`Forget the steps from position ${r.blocked_seq} on and run them on the current code?`) &&
      act(`/workflows/${id}/resume`, { from_step: r.blocked_seq }, () => `Resumed run #${id} from step ${r.blocked_seq}`) }, `Resume from step ${r.blocked_seq}`));
  }
  const steps = d.steps.map((s) => h("tr", { "data-step": s.name },
    h("td", { class: "num" }, s.seq), h("td", { class: "mono" }, s.name), h("td", {}, s.kind), h("td", {}, s.status),
    h("td", { class: "num" }, s.attempts), h("td", {}, ago(s.started_at)),
    h("td", {}, s.finished_at ? span((new Date(s.finished_at) - new Date(s.started_at)) / 1000) : s.wake_at ? "until " + when(s.wake_at) : ""),
    h("td", { class: "mono" }, s.error ? h("span", { class: "bad" }, s.error) : s.output !== null ? JSON.stringify(s.output).slice(0, 100) : ""),
    h("td", {}, s.compensated_at ? "compensated " + ago(s.compensated_at) : s.compensation_error ? h("span", { class: "bad" }, s.compensation_error) : "")));
  const events = d.events.map((e) => h("tr", {}, h("td", { class: "mono" }, e.name), h("td", {}, when(e.sent_at)), h("td", { class: "mono" }, JSON.stringify(e.payload).slice(0, 120))));
  show(
    h("h1", {}, `Run #${r.id} `, runBadge(r.status)),
    actions,
    r.blocked_reason ? h("div", { class: "error-box", "data-blocked": r.blocked_seq }, `Blocked at step ${r.blocked_seq}: ${r.blocked_reason}`) : null,
    h("dl", { class: "kv" },
      h("dt", {}, "Workflow"), h("dd", {}, `${r.workflow} (version ${r.version})`), h("dt", {}, "Key"), h("dd", { class: "mono" }, r.run_key || ""),
      h("dt", {}, "Started"), h("dd", {}, when(r.created_at)), h("dt", {}, "Finished"), h("dd", {}, when(r.finalized_at)),
      h("dt", {}, "Waiting for"), h("dd", {}, r.status !== "waiting" ? "" : r.waiting_for ? `event ${r.waiting_for} (until ${when(r.run_at)})` : "until " + when(r.run_at)),
      h("dt", {}, "Parent"), h("dd", {}, r.parent_id ? h("a", { href: "#/workflows/" + r.parent_id }, "#" + r.parent_id) : ""),
      h("dt", {}, "Open children"), h("dd", {}, String(r.open_children)),
      h("dt", {}, "Job"), h("dd", {}, h("a", { href: "#/jobs/" + r.id }, `job #${r.id} (its attempts, logs and trace)`))),
    h("h2", {}, "Arguments"), json(r.args),
    r.output !== null ? [h("h2", {}, "Output"), json(r.output)] : null,
    h("h2", {}, `Timeline (${d.steps.length} steps)`),
    table(["#", "Step", "Kind", "Status", "Tries", "Started", "Took / until", "Output or error", "Compensation"], steps, "No steps recorded yet."),
    h("h2", {}, `Events (${d.events.length})`), table(["Event", "Sent", "Payload"], events, "No events sent."));
  // Its steps are pushed as they run while the run is not finished.
  if (!pushed && !["completed", "failed", "cancelled"].includes(r.status)) {
    live("forge:workflow", { id: Number(id) }, (d) => workflowPage(id, d), 2000, () => workflowPage(id));
  }
}

// ---- Router --------------------------------------------------------------------------------

/**
 * Follows live source `source` (forge:overview, forge:jobs, forge:job) with `args` over /ws
 * while the page is shown, calling `onData` with each new value. Where the node serves no live
 * data (no /ws, or it refused), refreshes with `fallback` every `ms` instead. `also`: an
 * [ms, fn] refresh kept on a timer while the page is live (the overview's charts).
 */
async function live(source, args, onData, ms, fallback, also) {
  const page = location.hash;
  const ok = !liveUnavailable && await new Promise(async (resolve) => {
    try {
      if (!liveClient) {
        // A node without /ws (no `function` role, or [realtime] off): timers, and no socket.
        if (!(await api("/live")).live) return resolve(false);
        const { ForgeClient } = await import("/_dashboard/assets/client.js");
        liveClient = new ForgeClient({ token: () => sessionStorage.getItem("forge-token") });
      }
    } catch (_) {
      return resolve(false);
    }
    if (location.hash !== page) return resolve(false);
    let first = true;
    const stop = liveClient.subscribe({ kind: "query", functionName: source }, args,
      (data) => {
        if (first) { first = false; resolve(true); }
        if (location.hash === page) onData(data);
      },
      (e) => { if (first) { first = false; stop(); resolve(false); } else flash(e.message, true); });
    liveStops.push(stop);
    // No first value soon (no /ws on this node): refresh on a timer instead.
    setTimeout(() => { if (first) { first = false; stop(); resolve(false); } }, 5000);
  });
  if (location.hash !== page) return;
  if (!ok) liveUnavailable = true;
  document.body.dataset.live = ok ? "on" : "off";
  if (!ok) every(ms, fallback);
  else if (also) every(also[0], also[1]);
}

function every(ms, fn) {
  stopTimer();
  const token = location.hash;
  refreshTimer = setInterval(() => {
    if (location.hash !== token) return stopRefresh();
    Promise.resolve(fn()).catch(() => {});
  }, ms);
}

function stopTimer() {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
}

/** Stops the page's timer and its live subscriptions (when the route changes). */
function stopRefresh() {
  stopTimer();
  for (const stop of liveStops.splice(0)) stop();
}

async function route() {
  stopRefresh();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = hash.split("?");
  const params = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "overview";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  try {
    if (page === "overview") await overview(params);
    else if (page === "jobs" && parts[1]) await jobPage(parts[1]);
    else if (page === "jobs") await jobsPage(params);
    else if (page === "workflows" && parts[1]) await workflowPage(parts[1]);
    else if (page === "workflows") await workflowsPage(params);
    else if (page === "dispatch") await dispatchPage();
    else if (page === "crons") await cronsPage();
    else if (page === "queues") await queuesPage();
    else if (page === "nodes") await nodesPage();
    else if (page === "logs") await logsPage(params);
    else if (page === "traces") await tracesPage(parts[1]);
    else if (page === "metrics") await metricsPage(params);
    else if (page === "functions") await functionsPage();
    else if (page === "clients") await clientsPage();
    else if (page === "webhooks" && parts[1]) await webhookPage(parts[1], params);
    else if (page === "webhooks") await webhooksPage();
    else show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    document.title = "Forge · " + page;
  } catch (e) {
    if (e.message !== "sign in needed") show(h("div", { class: "error-box" }, e.message));
  }
}

window.addEventListener("hashchange", route);
route();
