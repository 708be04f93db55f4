// Brisk's web UI: plain JavaScript over the REST API (Flink's paths), no build step.
"use strict";

const view = document.getElementById("view");
const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("brisk-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("brisk-token", tokenInput.value));

let refreshTimer = null;
let refreshMs = 3000;

/** Escapes text for HTML. */
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/** A request to the API; JSON answers are parsed, errors thrown with the server's message. */
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.method && options.method !== "GET" && tokenInput.value) {
    headers["Authorization"] = "Bearer " + tokenInput.value;
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!response.ok) {
    const message = body && body.errors ? body.errors.join("; ") : text;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

function say(text) {
  const line = document.createElement("div");
  line.textContent = text;
  document.getElementById("message").appendChild(line);
  setTimeout(() => line.remove(), 8000);
}

function duration(ms) {
  if (ms < 0) return "";
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor(s / 60) % 60}m`;
}

function number(n) {
  return Math.round(n).toLocaleString("en-US");
}

function bytes(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` :
    n < 1073741824 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1073741824).toFixed(1)} GiB`;
}

function watermark(value) {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= -9.2e18) return "none";
  if (n >= 9.2e18) return "end of input";
  return new Date(n).toISOString().replace("T", " ").replace("Z", "");
}

async function showOverview() {
  const [overview, jobs] = await Promise.all([api("/overview"), api("/jobs/overview")]);
  const card = (value, label) => `<div class="card"><div class="value">${esc(value)}</div><div class="label">${esc(label)}</div></div>`;
  const rows = jobs.jobs.map(j => `<tr>
      <td><a href="#/jobs/${esc(j.jid)}">${esc(j.name)}</a></td>
      <td class="state ${esc(j.state)}">${esc(j.state)}</td>
      <td>${esc(new Date(j["start-time"]).toLocaleString())}</td>
      <td>${esc(duration(j.duration))}</td>
      <td>${esc(j.tasks.total)}</td>
      <td class="muted">${esc(j.jid)}</td></tr>`).join("");
  view.innerHTML = `<h1>Overview</h1>
    <div class="cards">
      ${card(overview.taskmanagers, "TaskManagers")}
      ${card(overview["slots-total"], "slots")}
      ${card(overview["slots-available"], "slots available")}
      ${card(overview["jobs-running"], "running jobs")}
      ${card(overview["jobs-finished"], "finished")}
      ${card(overview["jobs-cancelled"], "cancelled")}
      ${card(overview["jobs-failed"], "failed")}
    </div>
    <h2>Jobs</h2>
    <table id="jobs"><thead><tr><th>Name</th><th>State</th><th>Started</th><th>Duration</th><th>Subtasks</th><th>Id</th></tr></thead>
    <tbody>${rows || `<tr><td colspan="6" class="muted">No jobs</td></tr>`}</tbody></table>
    <p class="muted">${esc(overview["flink-version"])}</p>`;
}

async function showTaskManagers() {
  const tms = await api("/taskmanagers");
  const memory = t => t.memoryUsed === undefined ? "" :
    `${bytes(t.memoryUsed)}${t.hardware && t.hardware.physicalMemory ? ` of ${bytes(t.hardware.physicalMemory)}` : ""}`;
  const rows = tms.taskmanagers.map(t => `<tr><td>${esc(t.id)}</td><td>${esc(t.path)}</td>
      <td>${esc(t.slotsNumber)}</td><td>${esc(t.freeSlots)}</td><td>${esc(memory(t))}</td>
      <td>${esc(t.timeSinceLastHeartbeat)} ms</td></tr>`).join("");
  view.innerHTML = `<h1>TaskManagers</h1><table id="taskmanagers"><thead><tr><th>Id</th><th>Address</th><th>Slots</th>
    <th>Free slots</th><th>Memory</th><th>Last heartbeat</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** Places the plan's vertices in columns by their distance from the sources. */
function layout(nodes) {
  const byId = new Map(nodes.map(n => [n.id, n]));
  const depth = new Map();
  const depthOf = (node, seen = new Set()) => {
    if (depth.has(node.id)) return depth.get(node.id);
    if (seen.has(node.id)) return 0;
    seen.add(node.id);
    const inputs = (node.inputs || []).map(i => byId.get(i.id)).filter(Boolean);
    const d = inputs.length ? 1 + Math.max(...inputs.map(i => depthOf(i, seen))) : 0;
    depth.set(node.id, d);
    return d;
  };
  nodes.forEach(n => depthOf(n));
  const columns = new Map();
  const places = new Map();
  nodes.forEach(n => {
    const column = depth.get(n.id);
    const row = columns.get(column) || 0;
    columns.set(column, row + 1);
    places.set(n.id, { x: 20 + column * 320, y: 20 + row * 130 });
  });
  return places;
}

/** The job graph as an SVG DAG, each vertex with its parallelism and live figures. */
function dag(plan, figures) {
  const W = 260, H = 96;
  const places = layout(plan.nodes);
  const width = Math.max(...[...places.values()].map(p => p.x)) + W + 40;
  const height = Math.max(...[...places.values()].map(p => p.y)) + H + 40;
  const edges = plan.nodes.flatMap(n => (n.inputs || []).map(input => {
    const from = places.get(input.id), to = places.get(n.id);
    if (!from || !to) return "";
    const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x - 6, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
    return `<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"></path>
      <text class="edge-label" x="${mx - 20}" y="${(y1 + y2) / 2 - 6}">${esc(input.ship_strategy)}</text>`;
  })).join("");
  const vertices = plan.nodes.map(n => {
    const p = places.get(n.id), f = figures.get(n.id) || {};
    const name = n.description.length > 38 ? n.description.slice(0, 37) + "…" : n.description;
    return `<g class="vertex" data-vertex="${esc(n.id)}">
      <rect class="vertex ${esc(f.level || "ok")}" x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="6"></rect>
      <title>${esc(n.description)}</title>
      <text class="vertex-name" x="${p.x + 10}" y="${p.y + 20}">${esc(name)}</text>
      <text x="${p.x + 10}" y="${p.y + 40}">parallelism ${esc(n.parallelism)} · ${esc(number(f.inRate || 0))} rec/s in</text>
      <text x="${p.x + 10}" y="${p.y + 58}">backpressure ${esc(f.level || "ok")} (${esc(((f.ratio || 0) * 100).toFixed(0))}%)</text>
      <text x="${p.x + 10}" y="${p.y + 76}">watermark ${esc(f.watermark || "none")}</text></g>`;
  }).join("");
  return `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
    <path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"></path></marker></defs>${edges}${vertices}</svg>`;
}

/** Live figures of each vertex: records in per second, back pressure, lowest watermark. */
async function vertexFigures(jobId, vertices) {
  const figures = new Map();
  await Promise.all(vertices.map(async v => {
    try {
      const [detail, pressure, marks] = await Promise.all([
        api(`/jobs/${jobId}/vertices/${v.id}`),
        api(`/jobs/${jobId}/vertices/${v.id}/backpressure`),
        api(`/jobs/${jobId}/vertices/${v.id}/watermarks`),
      ]);
      const inRate = detail.subtasks.reduce((sum, s) => sum + (s.metrics["read-records-per-second"] || 0), 0);
      const lowest = marks.map(m => Number(m.value)).reduce((a, b) => Math.min(a, b), Infinity);
      const ratio = pressure.subtasks.reduce((m, s) => Math.max(m, s.ratio || 0), 0);
      figures.set(v.id, { inRate, level: pressure.backpressureLevel, ratio, watermark: marks.length ? watermark(lowest) : "none" });
    } catch (_) {
      // An ended job's vertices have no live figures.
    }
  }));
  return figures;
}

async function showJob(jobId) {
  const job = await api(`/jobs/${jobId}`);
  const running = job.state === "RUNNING";
  const [figures, checkpoints, exceptions] = await Promise.all([
    running && job.vertices.length ? vertexFigures(jobId, job.vertices) : Promise.resolve(new Map()),
    api(`/jobs/${jobId}/checkpoints`).catch(() => null),
    api(`/jobs/${jobId}/exceptions`).catch(() => null),
  ]);
  const vertexRows = job.vertices.map(v => `<tr><td>${esc(v.name)}</td><td>${esc(v.parallelism)}</td>
      <td>${esc(number(v.metrics["read-records"]))}</td><td>${esc(number(v.metrics["write-records"]))}</td>
      <td>${esc(bytes(v.metrics["read-bytes"]))}</td><td>${esc(bytes(v.metrics["write-bytes"]))}</td></tr>`).join("");
  const checkpointRow = (c, label) => `<tr>${label === undefined ? "" : `<th>${esc(label)}</th>`}<td>${esc(c.id)}</td>
      <td>${esc(c.is_savepoint ? "savepoint" : "checkpoint")}</td><td>${esc(c.status)}</td>
      <td>${esc(new Date(c.trigger_timestamp).toLocaleTimeString())}</td><td>${esc(c.end_to_end_duration)} ms</td>
      <td>${esc(bytes(c.state_size))}</td><td>${esc(c.num_acknowledged_subtasks)}/${esc(c.num_subtasks)}</td>
      <td class="muted">${esc(c.external_path)}</td></tr>`;
  const history = checkpoints ? checkpoints.history.map(c => checkpointRow(c)).join("") : "";
  // The history keeps only the latest checkpoints; the latest of each kind stays here.
  const latest = checkpoints ? [["Latest completed", checkpoints.latest.completed],
      ["Latest savepoint", checkpoints.latest.savepoint], ["Latest failed", checkpoints.latest.failed]]
    .filter(([, c]) => c).map(([label, c]) => checkpointRow(c, label)).join("") : "";
  const failures = exceptions ? exceptions.exceptionHistory.entries.map(e => `<tr>
      <td>${esc(new Date(e.timestamp).toLocaleString())}</td><td>${esc(e.taskName)}</td><td>${esc(e.stacktrace)}</td></tr>`).join("") : "";
  const counts = checkpoints ? checkpoints.counts : null;
  view.innerHTML = `<h1>${esc(job.name)} <span class="state ${esc(job.state)}" id="job-state">${esc(job.state)}</span></h1>
    <p class="muted">${esc(job.jid)} · running for ${esc(duration(job.duration))} · restarts ${esc(job.numRestarts ?? 0)}</p>
    <div class="actions">
      <button id="savepoint" ${running ? "" : "disabled"}>Trigger savepoint</button>
      <button id="cancel" class="danger" ${running ? "" : "disabled"}>Cancel job</button>
    </div>
    <div id="dag">${job.plan && job.plan.nodes.length ? dag(job.plan, figures) : `<p class="muted">No graph: the job is not running here.</p>`}</div>
    <h2>Vertices</h2>
    <table id="vertices"><thead><tr><th>Name</th><th>Parallelism</th><th>Records in</th><th>Records out</th><th>Bytes in</th><th>Bytes out</th></tr></thead>
    <tbody>${vertexRows}</tbody></table>
    <h2>Checkpoints ${counts ? `<span class="muted">${esc(counts.completed)} completed, ${esc(counts.failed)} failed</span>` : ""}</h2>
    <table id="latest-checkpoints"><thead><tr><th></th><th>Id</th><th>Kind</th><th>Status</th><th>Triggered</th><th>Duration</th><th>Size</th><th>Acknowledged</th><th>Path</th></tr></thead>
    <tbody>${latest || `<tr><td colspan="9" class="muted">None</td></tr>`}</tbody></table>
    <h3>Recent</h3>
    <table id="checkpoints"><thead><tr><th>Id</th><th>Kind</th><th>Status</th><th>Triggered</th><th>Duration</th><th>Size</th><th>Acknowledged</th><th>Path</th></tr></thead>
    <tbody>${history || `<tr><td colspan="8" class="muted">None</td></tr>`}</tbody></table>
    <h2>Exceptions</h2>
    <table id="exceptions"><thead><tr><th>Time</th><th>Task</th><th>Error</th></tr></thead>
    <tbody>${failures || `<tr><td colspan="3" class="muted">None</td></tr>`}</tbody></table>`;
  document.getElementById("savepoint").onclick = () => triggerSavepoint(jobId);
  document.getElementById("cancel").onclick = async () => {
    try {
      await api(`/jobs/${jobId}?mode=cancel`, { method: "PATCH" });
      say("Cancelling the job");
    } catch (e) { say(`Cancel failed: ${e.message}`); }
  };
}

/** Triggers a savepoint into the configured directory and reports where it went. */
async function triggerSavepoint(jobId) {
  try {
    const { "request-id": trigger } = await api(`/jobs/${jobId}/savepoints`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    say("Savepoint triggered");
    for (;;) {
      await new Promise(r => setTimeout(r, 300));
      const status = await api(`/jobs/${jobId}/savepoints/${trigger}`);
      if (status.status.id === "COMPLETED") {
        const op = status.operation || {};
        say(op.location ? `Savepoint completed: ${op.location}` : `Savepoint failed: ${op["failure-cause"]["stack-trace"]}`);
        document.body.dataset.savepoint = op.location || "failed";
        return;
      }
    }
  } catch (e) { say(`Savepoint failed: ${e.message}`); }
}

function showSubmit() {
  view.innerHTML = `<h1>Submit an artifact</h1>
    <form class="submit" id="submit-form">
      <label>Artifact (a Brisk program) <input type="file" id="artifact" required></label>
      <label>Arguments <input type="text" id="args" placeholder="--input /data/events.csv --output /data/out"></label>
      <label>Parallelism <input type="number" id="parallelism" min="1"></label>
      <button type="submit">Upload and run</button>
    </form>`;
  document.getElementById("submit-form").onsubmit = async event => {
    event.preventDefault();
    try {
      const form = new FormData();
      form.append("jarfile", document.getElementById("artifact").files[0]);
      const uploaded = await api("/jars/upload", { method: "POST", body: form });
      const jarId = uploaded.filename.split("/").pop();
      const request = { programArgs: document.getElementById("args").value };
      const p = parseInt(document.getElementById("parallelism").value, 10);
      if (p > 0) request.parallelism = p;
      const run = await api(`/jars/${jarId}/run`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      });
      location.hash = `#/jobs/${run.jobid}`;
    } catch (e) { say(`Submission failed: ${e.message}`); }
  };
}

async function route() {
  clearTimeout(refreshTimer);
  const hash = location.hash.replace(/^#/, "") || "/";
  const job = hash.match(/^\/jobs\/([0-9a-fA-F]+)$/);
  try {
    if (job) await showJob(job[1]);
    else if (hash === "/taskmanagers") await showTaskManagers();
    else if (hash === "/submit") return showSubmit();
    else await showOverview();
  } catch (e) {
    view.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
  // Live: the view is drawn again while it is shown, except forms.
  refreshTimer = setTimeout(route, refreshMs);
}

(async () => {
  try {
    const config = await api("/config");
    refreshMs = config["refresh-interval"] || refreshMs;
    document.getElementById("nav-submit").hidden = !config.features["web-submit"];
  } catch (_) { /* The UI still works without it. */ }
  window.addEventListener("hashchange", route);
  route();
})();
