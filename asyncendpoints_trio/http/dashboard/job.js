// One job: follows it through the admin job route's event stream (polling if the
// stream is refused or keeps failing), with Cancel and Retry behind a confirmation.

import { API, ApiError, api, connectionTrouble, liveOk, poller, problemText, state }
  from "./api.js";
import { $, TERMINAL, fromTemplate, label, main, setText } from "./dom.js";
import { renderJob } from "./job_parts.js";

export function jobView(id) {
  fromTemplate("t-job");
  setText($("job-id"), id);
  let job = null; // the admin detail JSON, with the stream's newer public fields merged in
  let source = null; // the event stream, while the job runs
  let polling = null; // polling instead of the stream, once the stream failed
  let idle = null; // slow checks of an ended job, which someone may retry elsewhere
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

  // Follow the job as its status asks: its event stream while it runs; after its end, a
  // check every poll interval (an operator elsewhere may retry it). Once the stream has
  // failed, polling does both.
  function follow() {
    if (stopped || state.locked || !job || polling) return;
    if (TERMINAL.has(job.status)) {
      closeStream();
      if (!idle) {
        idle = poller(async () => {
          await refetch();
          follow();
        });
        idle.later();
      }
    } else {
      if (idle) idle.stop();
      idle = null;
      if (!source) openStream();
    }
  }

  function closeStream() {
    if (source) source.close();
    source = null;
  }

  function openStream() {
    if (typeof EventSource === "undefined") return startPolling();
    source = new EventSource(`${API}/jobs/${encodeURIComponent(id)}`);
    setText($("job-stream"), "(live)");
    const onEvent = (event) => {
      streamErrors = 0;
      const publicJob = JSON.parse(event.data);
      job = { ...(job || {}), ...publicJob, admin: job && job.admin };
      renderJob(job);
      liveOk();
      if (event.type === "terminal") {
        closeStream(); // the server ends the stream; no reconnect
        setText($("job-stream"), "");
      }
      // The stream carries the public job; the admin part (attempts, audit) is fetched
      // again when the status moves, not on every progress report. A fetch already on
      // its way may have read the job before this event: it goes again.
      if (event.type !== "progress") refetch().then(follow, connectionTrouble);
      else if (inFlight) again = true;
    };
    for (const kind of ["status", "progress", "terminal"]) {
      source.addEventListener(kind, onEvent);
    }
    source.onerror = () => {
      // CLOSED: the server refused the stream (an HTTP error); otherwise the browser
      // reconnects by itself, and a few failures in a row mean it will not get far.
      streamErrors += 1;
      if (source.readyState === EventSource.CLOSED || streamErrors >= 3) {
        closeStream();
        startPolling();
      } else {
        setText($("job-stream"), "(reconnecting…)");
      }
    };
  }

  function startPolling() {
    if (polling || stopped) return;
    if (idle) idle.stop();
    idle = null;
    setText($("job-stream"), "(polling)");
    polling = poller(refetch);
    polling.start();
  }

  function stop() {
    stopped = true;
    closeStream();
    if (polling) polling.stop();
    if (idle) idle.stop();
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
        follow(); // the old stream ended with the job; follow the new run
      } else {
        const answer = await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
        setText(result, TERMINAL.has(answer.status) ? `Canceled: the job is ` +
          `${label(answer.status)}.` : "Cancel requested: the job stops at its next chance.");
        await refetch();
        follow();
      }
    } catch (error) {
      const what = action === "retry" ? "Retry" : "Cancel";
      const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
      if (!state.locked) {
        setText(result, refused ? `${what} refused (${error.status}): ${problemText(error)}`
          : `${what} failed: ${problemText(error)}`);
      }
    }
  }

  refetch().then(follow, (error) => {
    if (!state.locked) {
      connectionTrouble(error);
      startPolling();
    }
  });
  return { stop, wake: () => (polling || idle)?.wake() };
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
