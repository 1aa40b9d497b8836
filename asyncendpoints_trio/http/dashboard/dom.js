// Building and updating the page: DOM helpers, formats, and the two habits that keep a
// live page usable (rebuild only what changed, keep the keyboard focus).

export const STATUSES = ["Queued", "Scheduled", "InProgress", "Completed", "Failed", "Canceled"];
export const TERMINAL = new Set(["Completed", "Failed", "Canceled"]);
const LABELS = { InProgress: "In progress" };

export const main = document.getElementById("main");
let firstView = true;

export function h(tag, attrs, ...children) {
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

export const $ = (id) => document.getElementById(id);
export const label = (status) => LABELS[status] || status;

export function setText(node, text) {
  // Only real changes: an aria-live region announces every write.
  if (node.textContent !== text) node.textContent = text;
}

// Live updates rebuild parts of the page; these two keep that from costing a keyboard
// user their place: nothing is rebuilt unless its data changed, and a focused control
// (marked data-key) has the focus back after the rebuild.
const drawn = new WeakMap(); // node -> the JSON of the data it shows

export function changed(node, data) {
  const key = JSON.stringify(data);
  if (drawn.get(node) === key) return false;
  drawn.set(node, key);
  return true;
}

export function keepingFocus(container, rebuild) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : null;
  rebuild();
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

export function statusBadge(status, id) {
  return h("span", { class: `status s-${status}`, id, "data-status": status,
    text: label(status) });
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function timeNode(iso) {
  return iso ? h("time", { datetime: iso, text: formatTime(iso) }) : "—";
}

export function ago(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 2) return "just now";
  if (seconds < 120) return `${seconds} s ago`;
  return `${Math.round(seconds / 60)} min ago`;
}

export function shortId(id) {
  return id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function fromTemplate(id) {
  main.replaceChildren(document.getElementById(id).content.cloneNode(true));
  if (!firstView) main.querySelector("h2").focus(); // tell screen readers the view changed
  firstView = false;
}
