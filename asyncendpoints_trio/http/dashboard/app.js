// The jobs dashboard: plain DOM code in a few ES modules, no framework, no build step,
// no third-party script. Views live in the URL's hash (#/, #/jobs?status=Failed,
// #/jobs/<id>) so deep links and the back button work. The admin API's prefix comes from
// the server (data-api on <html>).

import { state } from "./api.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { overviewView } from "./overview.js";

function route() {
  if (state.view) state.view.stop();
  state.view = null;
  if (state.locked) return;
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const match = path.match(/^\/jobs\/([^/]+)$/);
  let current = "overview";
  if (match) {
    state.view = jobView(decodeURIComponent(match[1]));
    current = "jobs";
  } else if (path === "/jobs") {
    state.view = jobsView(params);
    current = "jobs";
  } else {
    state.view = overviewView();
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
