// PromptForge jobs page: the client's jobs, live progress and errors by code.
//
// Plain JavaScript, no build step, nothing loaded from elsewhere (the page's
// Content-Security-Policy allows only this origin). The API key lives in sessionStorage
// (this tab only) and travels in the X-API-Key header; it is never put in a URL.
// Running jobs are followed over GET /v1/jobs/{id}/events (Server-Sent Events read with
// fetch, since EventSource cannot send headers); the list is re-read every few seconds
// while any job has not ended, which also picks up new jobs.
"use strict";

(() => {
  const KEY_STORAGE = "promptforge.apiKey";
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
  const STREAMED = new Set(["QUEUED", "PROCESSING"]);
  const RANK = { AWAITING_UPLOAD: 0, PENDING: 1, QUEUED: 2, PROCESSING: 3 };
  const PAGE_SIZE = 25;
  // Browsers open at most 6 connections per host over HTTP/1.1: leave room for the rest.
  const MAX_STREAMS = 3;
  const POLL_ACTIVE_MS = 4000;
  const POLL_IDLE_MS = 30000;
  const STREAM_RETRY_MS = 2000;
  const CANCEL_ARM_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("key-form"),
    key: $("api-key"),
    forget: $("forget-key"),
    error: $("error"),
    notice: $("notice"),
    section: $("jobs-section"),
    summary: $("summary"),
    refresh: $("refresh"),
    rows: $("job-rows"),
    empty: $("empty"),
    more: $("more"),
  };

  const state = {
    key: null,
    generation: 0, // bumped on every key change: answers for an older key are dropped
    jobs: new Map(), // job_id -> status object
    order: [], // job ids, newest first
    rows: new Map(), // job_id -> {row, filesRow, parts...}
    nextToken: null,
    streams: new Map(), // job_id -> AbortController
    pollTimer: null,
    updatedAt: null,
  };

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || {};
    }
  }

  async function request(path, { method = "GET", accept = "application/json", signal } = {}) {
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: { "X-API-Key": state.key, Accept: accept },
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
        signal,
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "network", "network error");
    }
    if (res.ok) return res;
    let envelope = null;
    try {
      envelope = (await res.json()).error;
    } catch (_) {
      // not the JSON envelope (a proxy's page, say): the status code says enough
    }
    throw new ApiError(res.status, envelope?.code || "", envelope?.message || res.statusText, envelope?.details);
  }

  async function api(path, options) {
    return (await request(path, options)).json();
  }

  /** A sentence for the user from the API's error envelope. */
  function describe(err) {
    if (!(err instanceof ApiError)) return `Something went wrong in this page: ${err.message || err}`;
    const current = err.details.current_status;
    switch (err.status) {
      case 0:
        return "Cannot reach the service: check the connection and try again.";
      case 400:
        return `Invalid request: ${err.message}`;
      case 401:
        return "Invalid key: the service did not accept this API key. Check it, or ask your operator for a new one.";
      case 403:
        return "This key is not allowed to do that.";
      case 404:
        return "Not found: the job does not exist, or it belongs to another key.";
      case 409:
        if (err.code === "job_terminal") return `The job has already ended${current ? ` (${current})` : ""}.`;
        if (err.code === "job_not_completed") return `Results are not ready yet: the job is ${current || "still running"}.`;
        return `Not possible now: ${err.message}`;
      case 413:
        return `Too large: ${err.message}`;
      case 429:
        return "Too many requests: wait a moment and try again.";
      default:
        if (err.status >= 500) return `The service had a problem (${err.code || err.status}); try again in a moment.`;
        return `Request failed (${err.status}${err.code ? ` ${err.code}` : ""}): ${err.message}`;
    }
  }

  // ---------------------------------------------------------------- messages

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = !text;
  }

  function notify(text) {
    el.notice.textContent = text;
  }

  function failed(err, what) {
    if (err?.name === "AbortError") return;
    if (err instanceof ApiError && err.status === 401) {
      keyRejected();
      return;
    }
    showError(what ? `${what}: ${describe(err)}` : describe(err));
  }

  // ---------------------------------------------------------------- formatting

  const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const done = (job) => (job.completed_count || 0) + (job.failed_count || 0);

  function money(value) {
    if (value === null || value === undefined) return "—";
    if (value === 0) return "$0.00";
    if (value < 0.000001) return "< $0.000001";
    if (value < 0.01) return `$${Number(value.toPrecision(2))}`;
    return `$${value.toFixed(value < 10 ? 4 : 2)}`;
  }

  function localTime(iso) {
    const d = iso ? new Date(iso) : null;
    return d && !Number.isNaN(d.getTime()) ? d.toLocaleString() : "";
  }

  function duration(job) {
    const start = Date.parse(job.started_processing_at || "");
    if (Number.isNaN(start)) return "";
    const end = job.completed_at ? Date.parse(job.completed_at) : Date.now();
    const s = Math.max(0, Math.round((end - start) / 1000));
    const text = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
    return job.completed_at ? `took ${text}` : `running for ${text}`;
  }

  function node(tag, props = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "type") n.setAttribute(k, v);
      else n[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c);
    return n;
  }

  // ---------------------------------------------------------------- the table

  function buildRow(id) {
    const short = id.slice(0, 8);
    const parts = {};
    parts.id = node("code", { class: "job-id", text: short, title: id });
    parts.model = node("div", { class: "minor" });
    parts.created = node("time", { class: "minor" });
    parts.meta = node("div", { class: "minor meta" });
    parts.badge = node("span", { class: "badge" });
    parts.live = node("span", { class: "live", hidden: true, title: "Live updates" }, node("span", { class: "visually-hidden", text: "live" }));
    parts.when = node("div", { class: "minor" });
    parts.batches = node("div", { class: "minor batches", hidden: true });
    parts.jobError = node("div", { class: "job-error", hidden: true });
    parts.okBar = node("div", { class: "seg ok" });
    parts.failBar = node("div", { class: "seg failed" });
    parts.bar = node("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-label": `Progress of job ${short}` }, parts.okBar, parts.failBar);
    parts.pct = node("span", { class: "pct" });
    parts.completed = node("span", { class: "n completed" });
    parts.failed = node("span", { class: "n failed" });
    parts.total = node("span", { class: "n total" });
    parts.tokens = node("td", { class: "num tokens" });
    parts.cost = node("td", { class: "num cost" });
    parts.errors = node("td", { class: "errors" });
    parts.cancel = node("button", { type: "button", class: "cancel", text: "Cancel" });
    parts.results = node("button", { type: "button", class: "results", text: "Results", "aria-expanded": "false", "aria-controls": `files-${id}` });
    parts.files = node("div", { class: "files" });
    parts.filesRow = node("tr", { class: "files-row", id: `files-${id}`, hidden: true }, node("td", { colSpan: 8 }, parts.files));

    parts.cancel.setAttribute("aria-label", `Cancel job ${short}`);
    parts.cancel.addEventListener("click", () => onCancel(id, parts));
    parts.results.addEventListener("click", () => onResults(id, parts));

    parts.row = node(
      "tr",
      { class: "job", "data-job-id": id },
      node("td", { class: "job-cell" }, parts.id, parts.model, parts.created, parts.meta),
      node("td", { class: "status" }, node("div", { class: "status-line" }, parts.badge, parts.live), parts.when, parts.batches, parts.jobError),
      node("td", { class: "progress-cell" }, parts.bar, parts.pct),
      node("td", { class: "counts" }, parts.completed, " ok · ", parts.failed, " failed", node("br"), "of ", parts.total),
      parts.tokens,
      parts.cost,
      parts.errors,
      node("td", { class: "actions" }, parts.cancel, parts.results),
    );
    return parts;
  }

  function fillRow(parts, job) {
    const terminal = TERMINAL.has(job.status);
    const n = done(job);
    const total = job.prompt_count;
    parts.row.dataset.status = job.status;
    parts.model.textContent = `${job.provider} · ${job.model}${job.mode === "economy" ? " · economy" : ""}`;
    parts.created.textContent = localTime(job.created_at);
    parts.created.dateTime = job.created_at || "";
    const meta = Object.entries(job.metadata || {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    parts.meta.textContent = meta.length > 80 ? `${meta.slice(0, 79)}…` : meta;
    parts.meta.title = meta;

    parts.badge.textContent = job.status;
    parts.badge.className = `badge s-${job.status.toLowerCase()}`;
    parts.live.hidden = !state.streams.has(job.job_id);
    parts.when.textContent = duration(job);
    // An economy job's provider batches, as the provider counts them, while they run.
    const pb = job.provider_batches;
    parts.batches.hidden = !pb;
    parts.batches.textContent = pb
      ? `provider: ${integer.format(pb.requests_done)} of ${integer.format(pb.requests)} requests · ${integer.format(pb.ended)} of ${integer.format(pb.batches)} batches ended`
      : "";
    parts.jobError.hidden = !job.error;
    parts.jobError.textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";

    // The bar: completed (green) then failed (red), out of prompt_count; no value while
    // the count is not known yet (before the file is planned), as ARIA has it.
    if (total === null || total === undefined) {
      parts.bar.removeAttribute("aria-valuenow");
      parts.bar.removeAttribute("aria-valuemax");
      parts.bar.setAttribute("aria-valuetext", terminal ? "not started" : "waiting to start");
      parts.bar.classList.toggle("indeterminate", !terminal);
      parts.okBar.style.width = "0%";
      parts.failBar.style.width = "0%";
      parts.pct.textContent = terminal ? "not started" : "waiting";
    } else {
      const pct = total > 0 ? Math.min(100, (100 * n) / total) : terminal ? 100 : 0;
      parts.bar.classList.remove("indeterminate");
      parts.bar.setAttribute("aria-valuemax", String(total));
      parts.bar.setAttribute("aria-valuenow", String(Math.min(n, total)));
      parts.bar.setAttribute("aria-valuetext", `${integer.format(n)} of ${integer.format(total)} prompts done (${Math.floor(pct)}%), ${integer.format(job.failed_count || 0)} failed`);
      parts.okBar.style.width = total > 0 ? `${(100 * (job.completed_count || 0)) / total}%` : `${pct}%`;
      parts.failBar.style.width = total > 0 ? `${(100 * (job.failed_count || 0)) / total}%` : "0%";
      parts.pct.textContent = `${Math.floor(pct)}%`;
    }

    setCount(parts.completed, job.completed_count);
    setCount(parts.failed, job.failed_count);
    setCount(parts.total, total);
    setCount(parts.tokens, job.tokens_used);
    parts.tokens.title = `input ${integer.format(job.input_tokens || 0)} · output ${integer.format(job.output_tokens || 0)}`;
    parts.cost.textContent = money(job.estimated_cost_usd);
    fillErrors(parts.errors, job.error_counts || {});

    parts.cancel.hidden = terminal;
    parts.results.hidden = !terminal;
    parts.results.textContent = job.status === "COMPLETED" ? "Results" : "Partial results";
  }

  function setCount(target, value) {
    const known = value !== null && value !== undefined;
    target.textContent = known ? integer.format(value) : "—";
    target.dataset.value = known ? String(value) : "";
  }

  function fillErrors(cell, counts) {
    const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const key = JSON.stringify(entries);
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    cell.replaceChildren();
    if (!entries.length) {
      cell.append(node("span", { class: "none", text: "—", title: "No errors" }));
      return;
    }
    const list = node("ul", { class: "error-counts", "aria-label": "Errors by code" });
    for (const [code, count] of entries) {
      list.append(node("li", { "data-code": code, "data-count": String(count) }, node("code", { text: code }), " ", node("span", { class: "n", text: integer.format(count) })));
    }
    cell.append(list);
  }

  /** Keep a job's newest state: a list answer can be older than the last event. */
  function newer(next, prev) {
    if (!prev) return true;
    if (TERMINAL.has(prev.status)) return TERMINAL.has(next.status);
    if (TERMINAL.has(next.status)) return true;
    const a = RANK[next.status] ?? 0;
    const b = RANK[prev.status] ?? 0;
    return a > b || (a === b && done(next) >= done(prev));
  }

  function upsert(job, { atTop = false } = {}) {
    const id = job.job_id;
    if (!newer(job, state.jobs.get(id))) return;
    state.jobs.set(id, job);
    let parts = state.rows.get(id);
    if (!parts) {
      parts = buildRow(id);
      state.rows.set(id, parts);
      if (atTop) {
        state.order.unshift(id);
        el.rows.prepend(parts.row, parts.filesRow);
      } else {
        state.order.push(id);
        el.rows.append(parts.row, parts.filesRow);
      }
    }
    fillRow(parts, job);
  }

  function summarise() {
    const jobs = state.order.map((id) => state.jobs.get(id));
    const running = jobs.filter((j) => !TERMINAL.has(j.status)).length;
    el.empty.hidden = jobs.length > 0;
    el.more.hidden = !state.nextToken;
    const when = state.updatedAt ? ` · updated ${state.updatedAt.toLocaleTimeString()}` : "";
    el.summary.textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"} shown · ${running} not finished${when}`;
  }

  function clearJobs() {
    for (const ctl of state.streams.values()) ctl.abort();
    state.streams.clear();
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    state.jobs.clear();
    state.rows.clear();
    state.order = [];
    state.nextToken = null;
    el.rows.replaceChildren();
  }

  // ---------------------------------------------------------------- loading and live updates

  /** The first page of jobs (for a new key), or the next one ("Load more"). */
  async function loadPage(token = null) {
    const gen = state.generation;
    const button = token ? el.more : el.refresh;
    button.disabled = true;
    try {
      const page = await api(`/v1/jobs?limit=${PAGE_SIZE}${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
      if (gen !== state.generation) return;
      if (!token) {
        el.section.hidden = false;
        el.forget.hidden = false;
        showError("");
        state.updatedAt = new Date();
        notify(`${page.jobs.length} job${page.jobs.length === 1 ? "" : "s"} loaded.`);
      }
      state.nextToken = page.next_page_token;
      for (const job of page.jobs) upsert(job);
      summarise();
      follow();
    } catch (err) {
      if (gen === state.generation) failed(err, token ? "Could not load more jobs" : "Could not load your jobs");
    } finally {
      button.disabled = false;
    }
  }

  /** Re-read the newest jobs: new ones go on top, known ones are updated in place. */
  async function poll() {
    const gen = state.generation;
    try {
      const limit = Math.min(100, Math.max(PAGE_SIZE, state.order.length));
      const page = await api(`/v1/jobs?limit=${limit}`);
      if (gen !== state.generation) return;
      const fresh = page.jobs.filter((j) => !state.jobs.has(j.job_id));
      for (const job of fresh.reverse()) upsert(job, { atTop: true });
      for (const job of page.jobs) upsert(job);
      state.updatedAt = new Date();
      showError("");
    } catch (err) {
      if (gen !== state.generation) return;
      failed(err, "Could not refresh your jobs");
      if (err instanceof ApiError && err.status === 401) return;
    }
    summarise();
    follow();
  }

  /** Open event streams for running jobs and schedule the next poll of the list. */
  function follow() {
    if (!state.key) return;
    for (const id of state.order) {
      if (state.streams.size >= MAX_STREAMS) break;
      const job = state.jobs.get(id);
      if (STREAMED.has(job.status) && !state.streams.has(id)) stream(id);
    }
    clearTimeout(state.pollTimer);
    const active = state.order.some((id) => !TERMINAL.has(state.jobs.get(id).status));
    state.pollTimer = setTimeout(poll, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  async function stream(id) {
    const gen = state.generation;
    const ctl = new AbortController();
    state.streams.set(id, ctl);
    const parts = state.rows.get(id);
    if (parts) parts.live.hidden = false;
    let retryMs = STREAM_RETRY_MS;
    try {
      // The events function's own URL when the status gives one (the API's gateway buffers
      // responses, so a stream through it would arrive all at once at the end).
      const known = state.jobs.get(id);
      const url = (known && known.events_url) || `/v1/jobs/${encodeURIComponent(id)}/events`;
      const res = await request(url, { accept: "text/event-stream", signal: ctl.signal });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        buffer = (buffer + value).replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event.retry) retryMs = event.retry;
          if ((event.type === "status" || event.type === "done") && event.data && gen === state.generation) {
            upsert(JSON.parse(event.data));
            summarise();
          }
        }
      }
    } catch (err) {
      if (err?.name === "AbortError") return;
      if (gen === state.generation) {
        if (err instanceof ApiError && err.status === 401) failed(err);
        retryMs = Math.max(retryMs, POLL_ACTIVE_MS);
      }
    } finally {
      if (state.streams.get(id) === ctl) state.streams.delete(id);
      const p = state.rows.get(id);
      if (p && gen === state.generation) p.live.hidden = true;
    }
    // The server ends a stream at a terminal state or after a while; follow on if needed.
    if (gen === state.generation && state.key) setTimeout(() => gen === state.generation && follow(), retryMs);
  }

  function parseEvent(block) {
    const event = { type: "message", data: "", retry: 0 };
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.type = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
    }
    event.data = data.join("\n");
    return event;
  }

  // ---------------------------------------------------------------- actions

  async function onCancel(id, parts) {
    const button = parts.cancel;
    const short = id.slice(0, 8);
    if (button.dataset.armed !== "true") {
      // Two steps: a click arms the button, a second click within a few seconds cancels.
      button.dataset.armed = "true";
      button.textContent = "Confirm cancel";
      button.setAttribute("aria-label", `Confirm: cancel job ${short}`);
      clearTimeout(button.disarm);
      button.disarm = setTimeout(() => disarm(button, short), CANCEL_ARM_MS);
      notify(`Click again to cancel job ${short}.`);
      return;
    }
    clearTimeout(button.disarm);
    disarm(button, short);
    button.disabled = true;
    try {
      const job = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
      upsert(job);
      summarise();
      notify(`Job ${short} cancelled.`);
    } catch (err) {
      failed(err, `Could not cancel job ${short}`);
      poll();
    } finally {
      button.disabled = false;
    }
  }

  function disarm(button, short) {
    button.dataset.armed = "false";
    button.textContent = "Cancel";
    button.setAttribute("aria-label", `Cancel job ${short}`);
  }

  async function onResults(id, parts) {
    const open = parts.results.getAttribute("aria-expanded") === "true";
    parts.results.setAttribute("aria-expanded", String(!open));
    parts.filesRow.hidden = open;
    if (open) return;
    const job = state.jobs.get(id);
    const partial = job.status !== "COMPLETED";
    parts.files.replaceChildren(node("span", { class: "minor", text: "Getting download links…" }));
    try {
      const body = await api(`/v1/jobs/${encodeURIComponent(id)}/results${partial ? "?partial=true" : ""}`);
      const list = node("ul", { class: "file-list", "aria-label": `Result files of job ${id.slice(0, 8)}` });
      for (const file of body.files) {
        const link = node("a", { href: file.url, text: file.filename, rel: "noopener noreferrer" });
        link.setAttribute("download", file.filename);
        list.append(node("li", {}, link, node("span", { class: "minor", text: ` link valid until ${localTime(file.expires_at)}` })));
      }
      const title = `${partial ? "What the job produced" : "Result files"} (${body.files.length}):`;
      parts.files.replaceChildren(node("p", { class: "files-title", text: title }), body.files.length ? list : node("p", { class: "minor", text: "No files." }));
    } catch (err) {
      parts.files.replaceChildren(node("p", { class: "job-error", text: describe(err) }));
      failed(err, `Could not get the results of job ${id.slice(0, 8)}`);
    }
  }

  // ---------------------------------------------------------------- the key

  function useKey(key) {
    state.generation += 1;
    clearJobs();
    state.key = key;
    showError("");
    if (!key) {
      el.section.hidden = true;
      el.forget.hidden = true;
      notify("");
      return;
    }
    notify("Loading your jobs…");
    loadPage();
  }

  function keyRejected() {
    state.generation += 1;
    clearJobs();
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    el.section.hidden = true;
    el.forget.hidden = true;
    notify("");
    showError(describe(new ApiError(401, "unauthenticated", "")));
    el.key.focus();
    el.key.select();
  }

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = el.key.value.trim();
    if (!key) {
      showError("Enter your API key first.");
      el.key.focus();
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    useKey(key);
  });

  el.forget.addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    el.key.value = "";
    useKey(null);
    notify("The key is forgotten in this tab.");
    el.key.focus();
  });

  el.refresh.addEventListener("click", () => {
    clearTimeout(state.pollTimer);
    poll();
  });
  el.more.addEventListener("click", () => state.nextToken && loadPage(state.nextToken));

  // Durations of running jobs tick without waiting for an event.
  setInterval(() => {
    for (const id of state.order) {
      const job = state.jobs.get(id);
      if (job.status === "PROCESSING") state.rows.get(id).when.textContent = duration(job);
    }
  }, 1000);

  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    el.key.value = saved;
    useKey(saved);
  }
})();
