// twinvisor dashboard: vanilla JS, no build step. Everything the daemon sends is written with
// textContent (never innerHTML), so program output and names can't become markup.
"use strict";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const CSRF = meta("csrf-token");
const ROLE = meta("role");
let lastEvent = 0;
let logOffset = -1;
let logKey = "";

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = CSRF;
    headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) { location.reload(); throw new Error("logged out"); }
  return r.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function uptime(s) {
  if (s === null || s === undefined) return "-";
  s = Math.floor(s);
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function mib(b) { return b === null || b === undefined ? "-" : `${(b / 1048576).toFixed(1)} MiB`; }

async function act(name, verb) {
  if (verb === "stop" && !confirm(`Stop ${name}?`)) return;
  let body;
  if (verb === "signal") {
    const sig = prompt(`Signal to send to ${name}:`, "HUP");
    if (!sig) return;
    body = { signal: sig };
  }
  const res = await api("POST", `/ui/programs/${encodeURIComponent(name)}/${verb}`, body);
  if (!res.ok) alertLine(`${verb} ${name}: ${res.error || JSON.stringify(res.results || res.sent)}`);
  refresh();
}

function alertLine(text) {
  const list = document.getElementById("events");
  list.prepend(el("li", { class: "err", text }));
}

function buttons(name) {
  const box = el("span", { class: "actions" });
  if (ROLE !== "admin") return box;
  for (const verb of ["start", "stop", "restart", "signal"]) {
    const b = el("button", { type: "button", "data-verb": verb, "data-name": name, text: verb });
    b.addEventListener("click", () => act(name, verb));
    box.append(b);
  }
  return box;
}

function render(rows) {
  const groups = new Map();
  for (const r of rows) {
    if (!groups.has(r.group)) groups.set(r.group, []);
    groups.get(r.group).push(r);
  }
  const root = el("div");
  for (const [group, members] of groups) {
    const head = el("div", { class: "group" }, el("h3", { text: group }));
    if (members.length > 1) head.append(buttons(`${group}:*`));
    root.append(head);
    const table = el("table");
    table.append(el("tr", {}, ...["name", "state", "pid", "uptime", "restarts", "cpu s", "memory", "ready", ""].map((h) => el("th", { text: h }))));
    for (const r of members) {
      const ready = r.healthy === false ? "unhealthy" : (r.state === "RUNNING" ? "ready" : "-");
      const tr = el("tr", { "data-name": r.name, class: `state-${r.state}` },
        el("td", { class: "name", text: r.name }),
        el("td", { class: "state", text: r.state }),
        el("td", { class: "pid", text: r.pid === null ? "-" : String(r.pid) }),
        el("td", { text: uptime(r.uptime) }),
        el("td", { text: String(r.restarts) }),
        el("td", { text: r.cpu_seconds === null ? "-" : r.cpu_seconds.toFixed(2) }),
        el("td", { text: mib(r.rss_bytes) }),
        el("td", { text: ready }));
      const cell = el("td");
      cell.append(buttons(r.name));
      tr.append(cell);
      table.append(tr);
    }
    root.append(table);
  }
  document.getElementById("programs").replaceChildren(root);
  const select = document.getElementById("log-name");
  const current = select.value;
  const names = rows.map((r) => r.name);
  if ([...select.options].map((o) => o.value).join() !== names.join()) {
    select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(current)) select.value = current;
  }
}

async function refresh() {
  const res = await api("GET", "/ui/status");
  render(res.programs);
  if (!lastEvent) lastEvent = Math.max(0, res.last_event - 20);
}

function describe(e) {
  if (e.kind === "state") return `${e.previous} -> ${e.state}`;
  if (e.kind === "exit") return e.signal ? `killed by ${e.signal}` : `exit code ${e.exit_code}`;
  if (e.kind === "restart") return `restarting (${e.reason})`;
  if (e.kind === "ready") return e.ready ? "ready" : "not ready";
  return e.message || "";
}

async function followEvents() {
  for (;;) {
    try {
      const res = await api("GET", `/ui/events?after=${lastEvent}&wait=25`);
      const list = document.getElementById("events");
      for (const e of res.events) {
        lastEvent = e.id;
        const when = new Date(e.time * 1000).toLocaleTimeString();
        list.prepend(el("li", { text: `${when} ${e.instance || "-"} ${e.kind}: ${describe(e)}` }));
      }
      while (list.children.length > 200) list.lastChild.remove();
      if (res.events.length) await refresh();
    } catch (err) {
      await new Promise((ok) => setTimeout(ok, 2000));  // the daemon is being replaced: retry
    }
  }
}

async function followLog() {
  for (;;) {
    const name = document.getElementById("log-name").value;
    const stream = document.getElementById("log-stream").value;
    const key = `${name}/${stream}`;
    const pre = document.getElementById("log");
    if (key !== logKey) { logKey = key; logOffset = -1; pre.textContent = ""; }
    if (name) {
      try {
        const res = await api("GET", `/ui/logs/${encodeURIComponent(name)}?stream=${stream}&offset=${logOffset}`);
        if (res.offset < logOffset) pre.textContent = "";
        if (res.data) {
          pre.textContent += res.data;
          if (pre.textContent.length > 200000) pre.textContent = pre.textContent.slice(-100000);
          pre.scrollTop = pre.scrollHeight;
        }
        logOffset = res.offset;
      } catch (err) { /* retried below */ }
    }
    await new Promise((ok) => setTimeout(ok, 500));
  }
}

async function logout() {
  await api("POST", "/logout");
  location.reload();
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("who").textContent = `${meta("user")} (${ROLE})`;
  document.getElementById("logout").addEventListener("click", logout);
  await refresh();
  followEvents();
  followLog();
  setInterval(refresh, 5000);  // uptime, CPU and memory columns
});
