// Talking to the admin API: fetch with the page's cookies, problem+json errors, a page
// that stops and says so when it is refused, and polling that rests in a hidden tab.

import { h, main, setText } from "./dom.js";

const root = document.documentElement;
export const API = (root.dataset.api || "").replace(/\/+$/, "");
const POLL_MS = Math.max(200, Number(root.dataset.poll || "2") * 1000);
const alertBox = document.getElementById("alert");
const liveState = document.getElementById("live-state");
const liveNews = document.getElementById("live-news");
let liveKind = "";

// view: the current view ({ stop(), wake() }); locked: the API refused us (401/403), so
// there is nothing more to fetch until the page is reloaded.
export const state = { view: null, locked: false };

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, options = {}) {
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
  // A refused read stops the page; a refused action (a read-only operator's retry) is
  // only that action's failure, which its caller reports.
  const reading = !options.method || options.method === "GET";
  if (reading && (response.status === 401 || response.status === 403)) {
    lock(response.status, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// The header says how fresh the page is; a screen reader hears only when that changes
// in kind (live, paused, trouble, stopped), not the time of every refresh.
export function setLive(kind, text) {
  setText(liveState, text);
  if (kind !== liveKind) {
    liveKind = kind;
    if (kind !== "live" || liveNews.textContent) setText(liveNews, text);
  }
}

export function lock(status, problem) {
  // Refused: say so plainly instead of leaving half a page that can never update.
  state.locked = true;
  if (state.view) state.view.stop();
  state.view = null;
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

export function problemText(error) {
  return error instanceof ApiError ? error.message : String(error);
}

export function connectionTrouble(error) {
  if (state.locked) return;
  setLive("trouble", `Connection problem (${problemText(error)}); retrying…`);
}

export function liveOk() {
  if (!state.locked) setLive("live", `Live · updated ${new Date().toLocaleTimeString()}`);
}

// Runs `work` now and every POLL_MS while the tab is visible; a hidden tab costs nothing.
export function poller(work) {
  let timer = null;
  let stopped = false;
  let busy = false;
  let pending = false; // woken while busy: the answer in flight may be stale, go again
  async function tick() {
    clearTimeout(timer);
    timer = null;
    if (stopped || state.locked) return;
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
    if (stopped || state.locked) return;
    if (pending) tick();
    else timer = setTimeout(tick, POLL_MS);
  }
  return {
    start: tick,
    later: () => { timer = setTimeout(tick, POLL_MS); }, // the caller has just fetched
    wake: tick,
    stop: () => { stopped = true; clearTimeout(timer); },
  };
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.view) state.view.wake();
});
