// The overview: counts by status and by job name, throughput, instances.

import { api, poller } from "./api.js";
import { $, STATUSES, ago, changed, formatTime, fromTemplate, h, keepingFocus, label, setText }
  from "./dom.js";

export function overviewView() {
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
