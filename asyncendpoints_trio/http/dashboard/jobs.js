// The job list: filters by status and name, pages (cursors), finding a job by its id.

import { ApiError, api, poller } from "./api.js";
import { $, STATUSES, changed, fromTemplate, h, keepingFocus, label, setText, shortId,
  statusBadge, timeNode } from "./dom.js";

const PAGE_SIZE = 25;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function jobsView(params) {
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
    h("td", { class: "wide-only" }, timeNode(job.lastUpdatedAt)),
    h("td", { class: "num wide-only", text: `${job.retryCount} / ${job.maxRetries}` })));
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6, text: "No jobs match." })));
  keepingFocus(table, () => table.tBodies[0].replaceChildren(...rows));
  const filters = [status && `status ${label(status)}`, name && `name “${name}”`]
    .filter(Boolean);
  setText($("jobs-summary"), `${jobs.length} job${jobs.length === 1 ? "" : "s"} on page ` +
    `${pageNo}, newest first` + (filters.length ? `; ${filters.join(", ")}.` : "."));
  setText($("page-no"), `Page ${pageNo}`);
}
