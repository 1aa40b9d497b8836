// The parts of a job's page: status, progress, timeline, attempts, the error chain with
// its stack traces, the admin details and the result.

import { $, TERMINAL, changed, h, json, keepingFocus, label, setText, timeNode, formatTime }
  from "./dom.js";

export function renderJob(job) {
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

// The attempts that ended (the admin detail's history) and the one running now.
function attemptsOf(job) {
  const ended = (job.admin && job.admin.attempts) || [];
  if (job.status !== "InProgress" || !job.startedAt ||
    ended.some((a) => a.startedAt === job.startedAt)) return ended;
  const number = ended.length ? ended[ended.length - 1].number + 1 : (job.retryCount || 0) + 1;
  return [...ended, { number, startedAt: job.startedAt, endedAt: null, outcome: null }];
}

function renderTimeline(job) {
  const admin = job.admin || {};
  const events = [{ at: job.createdAt, text: "Submitted" }];
  for (const attempt of attemptsOf(job)) {
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
  const attempts = attemptsOf(job);
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
