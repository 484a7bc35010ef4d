// mcpgw operator console: polls console/overview with the admin token (sessionStorage, sent as
// Authorization: Bearer), renders with textContent only, acts through the admin API.
"use strict";

const TOKEN_KEY = "mcpgw-admin-token";
const POLL_MS = 2000;
const POINTS = 90; // samples kept for the charts (3 minutes at 2 s)
const samples = []; // {t, requests, errors}
let timer = null;

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

async function call(path, method) {
  const response = await fetch(path, {
    method: method || "GET",
    headers: { authorization: "Bearer " + token() },
    cache: "no-store",
    credentials: "omit",
  });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  return { status: response.status, ok: response.ok, body };
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function short(sha) {
  return sha ? sha.slice(0, 16) + "…" : "";
}

function describe(v) {
  if (!v) return "none";
  if (typeof v !== "object") return String(v);
  if (v.backend === "wasm") return "wasm " + v.version + " (" + short(v.sha256) + ")";
  return v.backend || JSON.stringify(v);
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

function clock(unix) {
  return unix ? new Date(unix * 1000).toLocaleTimeString() : "";
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "";
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderEdge(data) {
  const edge = data.health.edge;
  const comp = edge.component || {};
  $("edge-backend").textContent = edge.backend;
  $("edge-version").textContent = comp.version || "(python edge)";
  $("edge-contract").textContent = comp.contract || "";
  $("edge-sha256").textContent = comp.sha256 || "";
  $("edge-reason").textContent = edge.reason + (edge.since ? " — since " + when(edge.since) : "");
  const traps = edge.traps || {};
  const kinds = Object.entries(traps).filter(([k, n]) => k !== "total" && n > 0);
  $("edge-traps").textContent =
    (traps.total || 0) + (kinds.length ? " (" + kinds.map(([k, n]) => k + " " + n).join(", ") + ")" : "");
  const c = edge.cache || {};
  const looked = (c.hits || 0) + (c.misses || 0);
  $("edge-cache").textContent =
    c.entries + "/" + c.max_entries + " entries, " + c.hits + " hits, " + c.misses + " misses" +
    (looked ? " (" + Math.round((100 * c.hits) / looked) + "% hits)" : "") + ", " + c.crossings + " crossings";
  const previous = data.edge_admin.previous;
  $("edge-previous").textContent = describe(previous);
  const button = $("rollback");
  button.disabled = !previous;
  button.dataset.from = describe(data.edge_admin.active);
  button.dataset.to = describe(previous);
  const events = (data.edge_admin.events || []).slice().reverse();
  fill(
    document.querySelector("#edge-events tbody"),
    events.map((e) => {
      const tr = el("tr");
      tr.append(Object.assign(el("td", clock(e.time)), { title: when(e.time) }), el("td", e.action), el("td", e.actor), el("td", describe(e.from)),
        el("td", describe(e.to)), el("td", e.reason || ""));
      return tr;
    }),
  );
}

function renderLive(data) {
  const live = data.health.live;
  for (const key of ["sessions", "requests", "streams", "upstream_links"]) $("live-" + key).textContent = live[key];
  const tracing = data.health.tracing || {};
  $("tracing").textContent = tracing.enabled
    ? "on, " + tracing.exporter + (tracing.endpoint ? " to " + tracing.endpoint : "")
    : "off (" + (tracing.reason || "") + ")";
  const t = data.traffic;
  if (!t) return;
  $("traffic-total").textContent =
    t.requests + " (" + Object.entries(t.by_class).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ") +
    "), " + t.websockets + " WebSocket handshakes";
  samples.push({ t: data.time, requests: t.requests, errors: t.errors });
  while (samples.length > POINTS + 1) samples.shift();
  const rates = (key) => {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = samples[i].t - samples[i - 1].t;
      out.push(dt > 0 ? Math.max(0, samples[i][key] - samples[i - 1][key]) / dt : 0);
    }
    return out;
  };
  drawChart($("chart-rate"), $("rate-now"), rates("requests"));
  drawChart($("chart-errors"), $("errors-now"), rates("errors"));
}

function drawChart(svg, label, values) {
  const shown = values.length === 1 ? [values[0], values[0]] : values; // one reading: a flat line
  const max = Math.max(1, ...shown);
  const step = 300 / POINTS;
  const start = 300 - step * (shown.length - 1);
  const points = shown.map((v, i) => (start + i * step).toFixed(1) + "," + (78 - (v / max) * 74).toFixed(1)).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.replaceChildren(line);
  const now = values.length ? values[values.length - 1] : 0;
  label.textContent = values.length ? "now " + now.toFixed(1) + ", peak " + Math.max(...values).toFixed(1) : "(waiting for a second reading)";
}

function renderUpstreams(data) {
  const ups = Object.entries(data.health.upstreams || {});
  const rows = ups.map(([id, u]) => {
    const tr = el("tr");
    tr.dataset.id = id;
    const calls = u.calls || {};
    tr.append(
      el("td", id),
      el("td", u.state, "state state-" + u.state),
      el("td", u.transport),
      el("td", ago(u.since_s)),
      el("td", u.restarts),
      el("td", calls.total ?? ""),
      el("td", calls.errors ?? ""),
      el("td", calls.latency_ms_p50 != null ? calls.latency_ms_p50 + " ms p50, " + calls.latency_ms_p90 + " ms p90" : ""),
      el("td", u.error || ""),
    );
    return tr;
  });
  if (!rows.length) rows.push(Object.assign(el("tr"), { textContent: "no upstreams configured" }));
  fill(document.querySelector("#upstreams tbody"), rows);
}

function renderPlugins(data) {
  const list = data.plugin_admin ? data.plugin_admin.plugins : data.health.plugins || [];
  const rows = list.map((p) => {
    const tr = el("tr");
    tr.dataset.name = p.name;
    const c = p.counters || {};
    const faults = Object.entries(c.faults || {}).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ");
    const action = p.state === "enabled" ? "disable" : "enable";
    const button = el("button", action);
    button.type = "button";
    button.className = "plugin-action";
    button.addEventListener("click", () => pluginAction(p.name, action));
    const state = el("td", p.state + (p.reason ? " (" + p.reason + ")" : ""), "state state-" + p.state);
    const actionCell = el("td");
    if (data.plugin_admin) actionCell.append(button);
    tr.append(
      Object.assign(el("td", p.name + " " + p.version), { title: p.sha256 || "" }), state, actionCell,
      Object.assign(el("td", (p.hooks || []).length), { title: (p.hooks || []).join(", ") }),
      el("td", c.calls), el("td", c.denials), el("td", c.modifications),
      el("td", faults || "0"), el("td", c.p50_us != null ? c.p50_us + " µs" : ""),
    );
    return tr;
  });
  if (!rows.length) rows.push(Object.assign(el("tr"), { textContent: "no plugins loaded" }));
  fill(document.querySelector("#plugins tbody"), rows);
}

async function refresh() {
  let result;
  try {
    result = await call("console/overview");
  } catch (e) {
    say("gateway unreachable: " + e, true);
    return;
  }
  if (!result.ok) {
    stop();
    const why = result.body && result.body.error ? result.body.error : "HTTP " + result.status;
    say("refused (" + result.status + "): " + why, true);
    $("panels").hidden = true;
    if (result.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("session").hidden = true;
      $("login").hidden = false;
    }
    return;
  }
  const data = result.body;
  $("panels").hidden = false;
  $("gateway-version").textContent = data.health.version;
  $("updated").textContent = "updated " + new Date(data.time * 1000).toLocaleTimeString();
  renderEdge(data);
  renderLive(data);
  renderUpstreams(data);
  renderPlugins(data);
  if ($("message").className === "error") say("");
}

async function rollback() {
  const b = $("rollback");
  if (!window.confirm("Roll the edge back from " + b.dataset.from + " to " + b.dataset.to + "?")) return;
  const result = await call("edge/rollback", "POST");
  if (result.ok) say("rolled back: now " + describe(result.body.event.to));
  else say("rollback refused (" + result.status + "): " + ((result.body && (result.body.detail || result.body.error)) || ""), true);
  await refresh();
}

async function pluginAction(name, action) {
  if (action === "disable" && !window.confirm("Disable plugin " + name + "?")) return;
  const result = await call("plugins/" + encodeURIComponent(name) + "/" + action, "POST");
  if (result.ok) say("plugin " + name + ": " + action + "d");
  else say("plugin " + action + " refused (" + result.status + "): " + ((result.body && (result.body.detail || result.body.error)) || ""), true);
  await refresh();
}

function start() {
  say("");
  $("login").hidden = true;
  $("session").hidden = false;
  stop();
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    samples.length = 0;
    start();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    $("panels").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    say("token forgotten");
  });
  $("rollback").addEventListener("click", rollback);
  if (token()) start();
  else say("Enter the admin token (MCPGW_ADMIN_TOKEN) to connect.");
});
