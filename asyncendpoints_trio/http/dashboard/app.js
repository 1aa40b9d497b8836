// The jobs dashboard: plain DOM code, no framework, no build step, no third-party script.
// Views live in the URL's hash (#/, #/jobs?status=Failed, #/jobs/<id>) so deep links and
// the back button work. The admin API's prefix comes from the server (data-api on <html>).
"use strict";

(() => {
  const root = document.documentElement;
  const API = (root.dataset.api || "").replace(/\/+$/, "");
  const POLL_MS = Math.max(200, Number(root.dataset.poll || "2") * 1000);
  const PAGE_SIZE = 25;
  const STATUSES = ["Queued", "Scheduled", "InProgress", "Completed", "Failed", "Canceled"];
  const TERMINAL = new Set(["Completed", "Failed", "Canceled"]);
  const LABELS = { InProgress: "In progress" };
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  const main = document.getElementById("main");
  const alertBox = document.getElementById("alert");
  const liveState = document.getElementById("live-state");
  const liveNews = document.getElementById("live-news");
  let liveKind = "";
  let view = null; // the current view: { stop(), wake() }
  let locked = false; // the API refused us (401/403): nothing more to fetch
  let firstRoute = true;

  // ---- small helpers ------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const svg = tag.startsWith("svg:");
    const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const label = (status) => LABELS[status] || status;

  function setText(node, text) {
    // Only real changes: an aria-live region announces every write.
    if (node.textContent !== text) node.textContent = text;
  }

  // Live updates rebuild parts of the page; these two keep that from costing a keyboard
  // user their place: nothing is rebuilt unless its data changed, and a focused control
  // (marked data-key) has the focus back after the rebuild.
  const drawn = new WeakMap(); // node -> the JSON of the data it shows

  function changed(node, data) {
    const key = JSON.stringify(data);
    if (drawn.get(node) === key) return false;
    drawn.set(node, key);
    return true;
  }

  function keepingFocus(container, rebuild) {
    const active = document.activeElement;
    const key = active && container.contains(active) ? active.dataset.key : null;
    rebuild();
    if (key) {
      const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  function statusBadge(status, id) {
    return h("span", { class: `status s-${status}`, id, "data-status": status,
      text: label(status) });
  }

  function formatTime(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  }

  function timeNode(iso) {
    return iso ? h("time", { datetime: iso, text: formatTime(iso) }) : "—";
  }

  function ago(iso) {
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (!Number.isFinite(seconds)) return "—";
    if (seconds < 2) return "just now";
    if (seconds < 120) return `${seconds} s ago`;
    return `${Math.round(seconds / 60)} min ago`;
  }

  function shortId(id) {
    return id.length > 13 ? `${id.slice(0, 8)}…` : id;
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  function fromTemplate(id) {
    main.replaceChildren(document.getElementById(id).content.cloneNode(true));
    if (!firstRoute) main.querySelector("h2").focus(); // tell screen readers the view changed
    firstRoute = false;
  }

  // ---- talking to the admin API -------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(API + path, {
        credentials: "same-origin",
        cache: "no-store",
        ...options,
        headers: { Accept: "application/json", ...(options.headers || {}) },
      });
    } catch (error) {
      throw new ApiError(0, { detail: "the server did not answer" });
    }
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json().catch(() => null) : null;
    if (response.status === 401 || response.status === 403) lock(response.status, body);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // The header says how fresh the page is; a screen reader hears only when that changes
  // in kind (live, paused, trouble, stopped), not the time of every refresh.
  function setLive(kind, text) {
    setText(liveState, text);
    if (kind !== liveKind) {
      liveKind = kind;
      if (kind !== "live" || liveNews.textContent) setText(liveNews, text);
    }
  }

  function lock(status, problem) {
    // Refused: say so plainly instead of leaving half a page that can never update.
    locked = true;
    if (view) view.stop();
    view = null;
    main.replaceChildren();
    const detail = problem && (problem.detail || problem.title);
    alertBox.replaceChildren(
      h("h2", { text: status === 401 ? "Sign-in needed" : "Access denied" }),
      h("p", { text: `The admin API answered ${status}` + (detail ? `: ${detail}.` : ".") }),
      h("p", { text: "Sign in again (or ask for access), then reload this page." }),
    );
    alertBox.hidden = false;
    setLive("stopped", "Stopped: not authorized");
  }

  function problemText(error) {
    return error instanceof ApiError ? error.message : String(error);
  }

  function connectionTrouble(error) {
    if (locked) return;
    setLive("trouble", `Connection problem (${problemText(error)}); retrying…`);
  }

  function liveOk() {
    if (!locked) setLive("live", `Live · updated ${new Date().toLocaleTimeString()}`);
  }

  // Runs `work` now and every POLL_MS while the tab is visible; a hidden tab costs nothing.
  function poller(work) {
    let timer = null;
    let stopped = false;
    let busy = false;
    let pending = false; // woken while busy: the answer in flight may be stale, go again
    async function tick() {
      clearTimeout(timer);
      timer = null;
      if (stopped || locked) return;
      if (busy) {
        pending = true;
        return;
      }
      if (document.hidden) {
        setLive("paused", "Paused while this tab is hidden");
        return; // the visibilitychange handler wakes us
      }
      busy = true;
      pending = false;
      try {
        await work();
        liveOk();
      } catch (error) {
        if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) {
          connectionTrouble(error);
        }
      } finally {
        busy = false;
      }
      if (stopped || locked) return;
      if (pending) tick();
      else timer = setTimeout(tick, POLL_MS);
    }
    return { start: tick, wake: tick, stop: () => { stopped = true; clearTimeout(timer); } };
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && view) view.wake();
  });

  // ---- overview -----------------------------------------------------------------------

  function overviewView() {
    fromTemplate("t-overview");
    const counts = $("counts");
    for (const status of STATUSES) {
      counts.append(h("div", { "data-status": status },
        h("dt", { text: label(status) }), h("dd", { text: "…" })));
    }
    const loop = poller(async () => {
      const [stats, instances] = await Promise.all([api("/stats"), api("/instances")]);
      if (!counts.isConnected) return;
      renderCounts(stats.byStatus || {});
      renderRates((stats.rates && stats.rates.buckets) || []);
      renderByName(stats.byName || {});
      renderInstances(instances.instances || []);
    });
    loop.start();
    return loop;
  }

  function renderCounts(byStatus) {
    for (const status of STATUSES) {
      const dd = $("counts").querySelector(`[data-status="${status}"] dd`);
      setText(dd, String(byStatus[status] || 0));
    }
  }

  function renderRates(buckets) {
    const sum = (key) => buckets.reduce((total, b) => total + (b[key] || 0), 0);
    const submitted = sum("submitted");
    const completed = sum("completed");
    const failed = sum("failed");
    const ended = completed + failed;
    const rate = ended ? `${((100 * failed) / ended).toFixed(1)}%` : "none ended";
    setText($("rate-summary"), `${submitted} submitted, ${completed} completed, ${failed} ` +
      `failed; failure rate ${rate}.`);
    if (changed($("chart"), buckets)) $("chart").replaceChildren(chart(buckets));
  }

  // A bar chart of completed and failed jobs per bucket with a line for submissions.
  function chart(buckets) {
    const width = 600;
    const height = 170;
    const pad = { left: 34, right: 8, top: 10, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const top = Math.max(1, ...buckets.map((b) => Math.max(b.submitted || 0,
      (b.completed || 0) + (b.failed || 0))));
    const y = (value) => pad.top + plotH - (plotH * value) / top;
    const slot = plotW / Math.max(1, buckets.length);
    const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-labelledby": "rate-summary", preserveAspectRatio: "xMinYMin meet" });
    svg.append(h("svg:line", { class: "axis", x1: pad.left, x2: width - pad.right,
      y1: y(0), y2: y(0) }));
    svg.append(h("svg:text", { x: pad.left - 6, y: y(top) + 4, "text-anchor": "end",
      text: String(top) }));
    svg.append(h("svg:text", { x: pad.left - 6, y: y(0) + 4, "text-anchor": "end", text: "0" }));
    const points = [];
    buckets.forEach((bucket, i) => {
      const x = pad.left + i * slot + slot * 0.15;
      const barW = slot * 0.7;
      const done = bucket.completed || 0;
      const failed = bucket.failed || 0;
      const when = formatTime(bucket.at).slice(11, 16);
      svg.append(h("svg:rect", { class: "bar-completed", x, width: barW, y: y(done),
        height: y(0) - y(done) }, h("svg:title", { text: `${when}: ${done} completed` })));
      svg.append(h("svg:rect", { class: "bar-failed", x, width: barW, y: y(done + failed),
        height: y(done) - y(done + failed) },
      h("svg:title", { text: `${when}: ${failed} failed` })));
      points.push(`${x + barW / 2},${y(bucket.submitted || 0)}`);
      if (i === 0 || i === buckets.length - 1) {
        svg.append(h("svg:text", { x: x + barW / 2, y: height - 6, "text-anchor": "middle",
          text: when }));
      }
    });
    if (points.length > 1) {
      svg.append(h("svg:polyline", { class: "line-submitted", points: points.join(" ") }));
    }
    return svg;
  }

  function renderByName(byName) {
    const table = $("by-name");
    if (!changed(table, byName)) return;
    const names = Object.keys(byName).sort();
    table.tHead.replaceChildren(h("tr", {}, h("th", { scope: "col", text: "Job name" }),
      STATUSES.map((s) => h("th", { scope: "col", class: "num", text: label(s) }))));
    const rows = names.map((name) => h("tr", { "data-name": name },
      h("th", { scope: "row" }, h("a", { href: `#/jobs?name=${encodeURIComponent(name)}`,
        "data-key": `name-${name}`, text: name })),
      STATUSES.map((s) => h("td", { class: "num", "data-status": s,
        text: String(byName[name][s] || 0) }))));
    if (!rows.length) {
      rows.push(h("tr", {}, h("td", { colspan: STATUSES.length + 1, text: "No jobs yet." })));
    }
    keepingFocus(table, () => table.tBodies[0].replaceChildren(...rows));
  }

  function renderInstances(instances) {
    if (!changed($("instances"), instances)) return;
    const rows = instances.map((inst) => {
      const held = inst.jobsHeld || 0;
      const slots = inst.concurrency || 0;
      return h("tr", { "data-instance": inst.id },
        h("th", { scope: "row" }, h("code", { text: inst.id })),
        h("td", { text: `${inst.host || "?"} / ${inst.pid ?? "?"}` }),
        h("td", {},
          h("meter", { min: 0, max: Math.max(1, slots), value: held,
            "aria-label": `Load of ${inst.id}` }),
          ` ${held} of ${slots} slots busy`),
        h("td", {}, h("time", { datetime: inst.lastHeartbeat, title: formatTime(inst.lastHeartbeat),
          text: ago(inst.lastHeartbeat) })));
    });
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 4, text: "No live instances." })));
    $("instances").tBodies[0].replaceChildren(...rows);
  }

  // ---- job list -----------------------------------------------------------------------

  function jobsView(params) {
    fromTemplate("t-jobs");
    const status = params.get("status") || "";
    const name = params.get("name") || "";
    const select = $("f-status");
    for (const s of STATUSES) select.append(h("option", { value: s, text: label(s) }));
    select.value = STATUSES.includes(status) ? status : "";
    $("f-name").value = name;
    const cursors = [null]; // the cursor of each page seen, for "Newer jobs"
    let next = null;

    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      if (select.value) query.set("status", select.value);
      if ($("f-name").value.trim()) query.set("name", $("f-name").value.trim());
      location.hash = `#/jobs${query.toString() ? `?${query}` : ""}`;
    });
    $("find").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("find-id").value.trim();
      if (!UUID.test(id)) {
        setText($("find-error"), "A job id is a UUID, like 3f2b…-…; check what you pasted.");
        $("find-id").setAttribute("aria-invalid", "true");
        return;
      }
      location.hash = `#/jobs/${id.toLowerCase()}`;
    });
    $("next").addEventListener("click", () => {
      if (!next) return;
      cursors.push(next);
      loop.wake();
    });
    $("prev").addEventListener("click", () => {
      if (cursors.length < 2) return;
      cursors.pop();
      loop.wake();
    });

    api("/stats").then((stats) => {
      $("names").replaceChildren(...Object.keys(stats.byName || {}).sort()
        .map((n) => h("option", { value: n })));
    }, () => {});

    const loop = poller(async () => {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (status) query.set("status", status);
      if (name) query.set("name", name);
      const cursor = cursors[cursors.length - 1];
      if (cursor) query.set("cursor", cursor);
      let page;
      try {
        page = await api(`/jobs?${query}`);
      } catch (error) {
        if (error instanceof ApiError && error.status === 400) {
          setText($("jobs-summary"), `The filter was refused: ${error.message}`);
          return;
        }
        throw error;
      }
      if (!$("jobs")) return;
      next = page.nextCursor;
      renderJobs(page.jobs || [], cursors.length, status, name);
      $("next").disabled = !next;
      $("prev").disabled = cursors.length < 2;
    });
    loop.start();
    return loop;
  }

  function renderJobs(jobs, pageNo, status, name) {
    const table = $("jobs");
    if (!changed(table, [jobs, pageNo])) return;
    const rows = jobs.map((job) => h("tr", { "data-job": job.id },
      h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.id}`, title: job.id,
        "aria-label": `Job ${job.id}`, "data-key": `job-${job.id}`, text: shortId(job.id) })),
      h("td", { text: job.name }),
      h("td", {}, statusBadge(job.status)),
      h("td", {}, timeNode(job.createdAt)),
      h("td", {}, timeNode(job.lastUpdatedAt)),
      h("td", { class: "num", text: `${job.retryCount} / ${job.maxRetries}` })));
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6, text: "No jobs match." })));
    keepingFocus(table, () => table.tBodies[0].replaceChildren(...rows));
    const filters = [status && `status ${label(status)}`, name && `name “${name}”`]
      .filter(Boolean);
    setText($("jobs-summary"), `${jobs.length} job${jobs.length === 1 ? "" : "s"} on page ` +
      `${pageNo}, newest first` + (filters.length ? `; ${filters.join(", ")}.` : "."));
    setText($("page-no"), `Page ${pageNo}`);
  }

  // ---- one job ------------------------------------------------------------------------

  function jobView(id) {
    fromTemplate("t-job");
    setText($("job-id"), id);
    let job = null; // the admin detail JSON, with the stream's newer public fields merged in
    let source = null;
    let polling = null;
    let stopped = false;
    let streamErrors = 0;

    // One fetch at a time; a call during one makes it go again once it is done, so an
    // answer read before the latest event never has the last word.
    let inFlight = null;
    let again = false;
    function refetch() {
      if (stopped) return Promise.resolve();
      if (inFlight) {
        again = true;
        return inFlight;
      }
      inFlight = (async () => {
        try {
          do {
            again = false;
            job = await api(`/jobs/${encodeURIComponent(id)}`);
            if (!stopped) renderJob(job);
            liveOk();
          } while (again && !stopped);
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) return notFound();
          throw error;
        } finally {
          inFlight = null;
        }
      })();
      return inFlight;
    }

    function notFound() {
      stop();
      main.querySelectorAll("section, .actions").forEach((node) => node.remove());
      setText($("job-status"), "not found");
      setText($("job-stream"), `No job ${id} (unknown, or removed after its retention).`);
    }

    function openStream() {
      if (stopped || locked || polling || typeof EventSource === "undefined") {
        if (!polling) startPolling();
        return;
      }
      if (source) source.close();
      source = new EventSource(`${API}/jobs/${encodeURIComponent(id)}`);
      setText($("job-stream"), "(live)");
      const onEvent = (event) => {
        streamErrors = 0;
        const publicJob = JSON.parse(event.data);
        job = { ...(job || {}), ...publicJob, admin: job && job.admin };
        renderJob(job);
        liveOk();
        // The stream carries the public job; the admin part (attempts, audit) is fetched
        // again when the status moves, not on every progress report.
        if (event.type !== "progress") refetch().catch(connectionTrouble);
        if (event.type === "terminal") {
          source.close();
          source = null;
          setText($("job-stream"), "(finished)");
        }
      };
      for (const kind of ["status", "progress", "terminal"]) {
        source.addEventListener(kind, onEvent);
      }
      source.onerror = () => {
        // CLOSED: the server refused the stream (an HTTP error); otherwise the browser
        // reconnects by itself, and a few failures in a row mean it will not get far.
        streamErrors += 1;
        if (source.readyState === EventSource.CLOSED || streamErrors >= 3) {
          source.close();
          source = null;
          startPolling();
        } else {
          setText($("job-stream"), "(reconnecting…)");
        }
      };
    }

    function startPolling() {
      if (polling || stopped) return;
      setText($("job-stream"), "(polling)");
      polling = poller(refetch);
      polling.start();
    }

    function stop() {
      stopped = true;
      if (source) source.close();
      if (polling) polling.stop();
    }

    $("cancel").addEventListener("click", () => act("cancel"));
    $("retry").addEventListener("click", () => act("retry"));

    async function act(action) {
      const result = $("action-result");
      if (!job) return;
      const allowed = action === "retry" ? TERMINAL.has(job.status) && job.status !== "Completed"
        : !TERMINAL.has(job.status);
      if (!allowed) {
        setText(result, action === "retry"
          ? `Only a Failed or Canceled job can be retried; this one is ${label(job.status)}.`
          : `This job has ended (${label(job.status)}); there is nothing to cancel.`);
        return;
      }
      const yes = await confirmAction(action, job);
      if (!yes) {
        setText(result, action === "retry" ? "Retry not sent." : "Cancel not sent.");
        return;
      }
      setText(result, action === "retry" ? "Sending retry…" : "Sending cancel…");
      try {
        if (action === "retry") {
          job = await api(`/jobs/${encodeURIComponent(id)}/retry`, { method: "POST" });
          renderJob(job);
          setText(result, `Retried: the job is ${label(job.status)} again, with a fresh ` +
            "attempt budget.");
          openStream(); // the old stream ended with the job; follow the new run
        } else {
          const answer = await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
          setText(result, TERMINAL.has(answer.status) ? `Canceled: the job is ` +
            `${label(answer.status)}.` : "Cancel requested: the job stops at its next chance.");
          await refetch();
        }
      } catch (error) {
        if (!locked) setText(result, `${action === "retry" ? "Retry" : "Cancel"} failed: ` +
          `${problemText(error)}`);
      }
    }

    refetch().then(() => {
      if (job && !TERMINAL.has(job.status)) openStream();
      else if (job) setText($("job-stream"), "");
    }, (error) => {
      if (!locked) {
        connectionTrouble(error);
        startPolling();
      }
    });
    return { stop, wake: () => { if (polling) polling.wake(); } };
  }

  function confirmAction(action, job) {
    const dialog = $("confirm");
    const retry = action === "retry";
    setText($("confirm-title"), retry ? "Retry this job?" : "Cancel this job?");
    setText($("confirm-text"), retry
      ? `Job ${job.name} (${job.id}) is ${label(job.status)}. Retrying queues it again ` +
        "with a fresh attempt budget."
      : `Job ${job.name} (${job.id}) is ${label(job.status)}. Canceling stops it; it ends ` +
        "Canceled.");
    setText($("confirm-yes"), retry ? "Yes, retry the job" : "Yes, cancel the job");
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"),
        { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      $("confirm-no").focus(); // the safe choice is the default one
    });
  }

  function renderJob(job) {
    if (!$("job-status")) return;
    setText($("job-name"), job.name || "");
    const badge = $("job-status");
    badge.className = `status s-${job.status}`;
    badge.dataset.status = job.status;
    setText(badge, label(job.status) + (job.cancelRequested && !TERMINAL.has(job.status)
      ? " (cancel requested)" : ""));
    const canRetry = job.status === "Failed" || job.status === "Canceled";
    // aria-disabled, not disabled: the buttons stay in the Tab order and say why not.
    $("retry").setAttribute("aria-disabled", String(!canRetry));
    $("cancel").setAttribute("aria-disabled", String(TERMINAL.has(job.status)));
    renderProgress(job.progress, job.status);
    renderTimeline(job);
    renderAttempts(job);
    renderError(job.error);
    renderDetails(job);
    $("result-section").hidden = job.result === null || job.result === undefined;
    setText($("result"), job.result === null || job.result === undefined ? "" : json(job.result));
  }

  function renderProgress(progress, status) {
    const box = $("progress");
    $("progress-section").hidden = progress === null || progress === undefined;
    if (progress === null || progress === undefined) return box.replaceChildren();
    let fraction = null;
    if (typeof progress === "number") fraction = progress;
    else if (typeof progress.done === "number" && typeof progress.total === "number" &&
      progress.total > 0) fraction = progress.done / progress.total;
    const nodes = [];
    if (fraction !== null) {
      const percent = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
      nodes.push(h("progress", { id: "progress-bar", max: 100, value: percent,
        "aria-label": "Progress" }), ` ${percent}%`);
    }
    if (typeof progress === "object") nodes.push(h("pre", { class: "json", text: json(progress) }));
    if (TERMINAL.has(status)) nodes.push(h("p", { class: "muted", text: "Last report before the end." }));
    box.replaceChildren(...nodes);
  }

  function renderTimeline(job) {
    const admin = job.admin || {};
    const events = [{ at: job.createdAt, text: "Submitted" }];
    for (const attempt of admin.attempts || []) {
      events.push({ at: attempt.startedAt, text: `Attempt ${attempt.number} started` });
      if (attempt.endedAt) {
        events.push({ at: attempt.endedAt, text: `Attempt ${attempt.number} ended: ` +
          `${attempt.outcome || "?"}` });
      }
    }
    for (const note of admin.audit || []) {
      events.push({ at: note.at, text: `${note.action === "retry" ? "Retried" : "Cancel requested"}` +
        (note.by ? ` by ${note.by}` : "") });
    }
    if (job.nextAttemptAt) events.push({ at: job.nextAttemptAt, text: "Next attempt due" });
    if (TERMINAL.has(job.status) && job.completedAt) {
      events.push({ at: job.completedAt, text: `Ended ${label(job.status)}` });
    } else {
      events.push({ at: job.lastUpdatedAt, text: `Now ${label(job.status)}` });
    }
    const known = events.filter((e) => e.at);
    known.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    $("timeline").replaceChildren(...known.map((e) => h("li", {}, timeNode(e.at), ` — ${e.text}`)));
  }

  function renderAttempts(job) {
    const attempts = (job.admin && job.admin.attempts) || [];
    const rows = attempts.map((a) => h("tr", {},
      h("th", { scope: "row", text: String(a.number) }),
      h("td", {}, timeNode(a.startedAt)), h("td", {}, timeNode(a.endedAt)),
      h("td", { text: a.outcome || (a.endedAt ? "?" : "running") }),
      h("td", { text: a.errorCode || a.errorMessage
        ? `${a.errorCode || ""}${a.errorCode && a.errorMessage ? ": " : ""}${a.errorMessage || ""}`
        : "—" })));
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 5, text: "Not started yet." })));
    $("attempts").tBodies[0].replaceChildren(...rows);
  }

  function renderError(error) {
    $("error-section").hidden = !error;
    if (!changed($("error"), error || null)) return;
    if (!error) return $("error").replaceChildren();
    const nodes = [h("p", {}, h("strong", { text: error.code || "Error" }),
      error.message ? `: ${error.message}` : "")];
    let exception = error.exception;
    let depth = 0;
    while (exception && depth < 20) {
      const trace = exception.stackTrace;
      nodes.push(h("div", { class: "cause" },
        h("p", {}, depth === 0 ? "Raised " : "Caused by ", h("code", { text: exception.type }),
          exception.message ? `: ${exception.message}` : ""),
        trace ? h("details", {}, h("summary", { "data-key": `trace-${depth}`,
          text: "Stack trace" }),
          h("pre", { tabindex: 0, text: Array.isArray(trace) ? trace.join("\n") : trace }))
          : null));
      exception = exception.innerException;
      depth += 1;
    }
    // Keep open stack traces open across live updates.
    const open = [...$("error").querySelectorAll("details")].map((d) => d.open);
    keepingFocus($("error"), () => $("error").replaceChildren(...nodes));
    $("error").querySelectorAll("details").forEach((d, i) => { d.open = open[i] || false; });
  }

  function renderDetails(job) {
    const admin = job.admin || {};
    if (!changed($("details"), [job.name, job.priority, job.retryCount, job.maxRetries,
      job.cancelRequested, admin])) return;
    const rows = [
      ["Name", job.name], ["Priority", admin.priority ?? job.priority],
      ["Retries", `${job.retryCount} of ${job.maxRetries}`],
      ["Owner", admin.owner ?? "—"],
      ["Lease expires", formatTime(admin.leaseExpiresAt)],
      ["Fencing token", admin.fencingToken ?? "—"],
      ["Cancel requested", (admin.cancelRequested ?? job.cancelRequested) ? "yes" : "no"],
      ["Due", formatTime(admin.dueAt)],
    ];
    const nodes = rows.flatMap(([term, value]) => [h("dt", { text: term }),
      h("dd", { text: String(value) })]);
    if ("payload" in admin) {
      nodes.push(h("dt", { text: "Payload" }),
        h("dd", {}, h("pre", { class: "json", tabindex: 0, text: json(admin.payload) })));
    }
    $("details").replaceChildren(...nodes);
  }

  // ---- routing ------------------------------------------------------------------------

  function route() {
    if (view) view.stop();
    view = null;
    if (locked) return;
    const [path, query] = (location.hash.slice(1) || "/").split("?");
    const params = new URLSearchParams(query || "");
    const match = path.match(/^\/jobs\/([^/]+)$/);
    let current = "overview";
    if (match) {
      view = jobView(decodeURIComponent(match[1]));
      current = "jobs";
    } else if (path === "/jobs") {
      view = jobsView(params);
      current = "jobs";
    } else {
      view = overviewView();
    }
    document.querySelectorAll("nav [data-view]").forEach((link) => {
      if (link.dataset.view === current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    document.title = `${current === "overview" ? "Overview" : match ? "Job" : "Jobs"} · ` +
      "Jobs dashboard";
  }

  window.addEventListener("hashchange", route);
  route();
})();
