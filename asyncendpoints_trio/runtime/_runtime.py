"""The runtime: starts the actors in one nursery, wires their channels, drains on shutdown.

    routes --submit--> Intake --(group commit)--> store
    store --claim--> Dispatcher --HeldJob--> WorkerPool --Outcome--> OutcomeWriter --> store
    LeaseKeeper renews what HeldJobs holds; Recovery sweeps the store fleet-wide.

Every actor runs under ``supervise``, which restarts it with backoff if it crashes, after
letting it settle what its dead run left (``Actor.after_crash``). The runtime owns every
channel end, so a restarted actor picks up the same channels, and closing them is how
shutdown travels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import time
from typing import Any

import trio

from .._config import EndpointsConfig
from .._errors import NotAccepting
from .._handlers import HandlerRegistry
from .._job import Job, JobStatus
from .._text import plural
from ..stores._admin import InstanceInfo, admin_of
from ..stores._protocol import JobStore, NewJob, Outcome, Submitted
from ..telemetry._recorder import JobRecorder, NullRecorder
from ._actor import Actor
from ._attempt import Attempts
from ._dispatcher import Dispatcher
from ._events import StoreEvents
from ._held import CancelReason, HeldJob, HeldJobs, Phase
from ._intake import Intake, Reply, Submission
from ._lease import LeaseKeeper
from ._outcomes import OutcomeWriter
from ._recovery import Recovery
from ._statistics import RuntimeStatistics
from ._supervisor import ActorHealth, supervise
from ._worker import WorkerPool

log = logging.getLogger("asyncendpoints_trio.runtime")

# After the handlers have stopped, how long the outcome writer may take to store what they
# left. Past it, unwritten jobs keep their leases until expiry and are reclaimed then.
OUTCOME_FLUSH = 5.0


class Runtime:
    """Runs handlers for jobs in ``store``. Start it with ``await nursery.start(rt.run)``."""

    def __init__(
        self,
        store: JobStore,
        handlers: HandlerRegistry,
        config: EndpointsConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.config = config
        self._rng = rng or random.Random()
        self._submit: trio.MemorySendChannel[Submission] | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._started = False
        self._health: dict[str, ActorHealth] = {}
        self._actors: dict[str, Actor] = {}
        self.held = HeldJobs(config.concurrency + config.prefetch)
        self.pool: WorkerPool | None = None
        # What jobs do here, per name: the job metrics.
        self.recorder = JobRecorder() if config.metrics else NullRecorder()
        self._jobs_rx: trio.MemoryReceiveChannel[HeldJob] | None = None
        self._submit_rx: trio.MemoryReceiveChannel[Submission] | None = None
        self._intake: Intake | None = None
        self._writer: OutcomeWriter | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self._submit is not None

    def stop(self) -> None:
        """Begin a graceful shutdown; ``run`` returns when it is complete."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def run(
        self, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self._started:
            raise RuntimeError("a Runtime runs once; make a new one")
        self._started = True
        try:
            await self._run(task_status)
        finally:
            self._submit = None
            # However the runtime ended (drained, or cancelled from outside), nobody waits
            # for an answer that will not come.
            if self._submit_rx is not None:
                self._refuse_leftovers(self._submit_rx)
            if self._intake is not None:
                self._intake.refuse_carry()
            self._stopped.set()

    async def _run(self, task_status: trio.TaskStatus[Runtime]) -> None:
        cfg = self.config
        total = cfg.concurrency + cfg.prefetch
        submit_tx, submit_rx = trio.open_memory_channel[Submission](cfg.submit_batch * 4)
        self._submit_rx = submit_rx
        jobs_tx, jobs_rx = trio.open_memory_channel[HeldJob](total)
        out_tx, out_rx = trio.open_memory_channel[Outcome](total)
        owner = cfg.instance_id

        intake = Intake(self.store, submit_rx, cfg.submit_batch, cfg.batch_bytes,
                        cfg.max_queued, self.recorder)
        recovery = Recovery(self.store, cfg.recovery_interval, cfg.recovery_batch)
        dispatcher = Dispatcher(self.store, self.held, jobs_tx, owner, cfg.lease_ttl)
        attempts = Attempts(cfg, self.handlers, self._rng, self.recorder)
        pool = WorkerPool(attempts, self.held, cfg.concurrency, jobs_rx, out_tx)
        writer = OutcomeWriter(self.store, self.held, out_rx, cfg.restart_backoff_max,
                               cfg.batch_bytes, self.recorder)
        presence = InstanceInfo(owner, socket.gethostname(), os.getpid(), time.time(),
                                cfg.concurrency)
        keeper = LeaseKeeper(self.store, self.held, owner, cfg.lease_ttl, cfg.heartbeat_interval,
                             presence)
        events = StoreEvents(self.store, self.held)
        self._actors = {"intake": intake, "recovery": recovery, "store_events": events}
        if cfg.run_workers:
            self._actors |= {"dispatcher": dispatcher, "workers": pool, "outcomes": writer,
                             "lease_keeper": keeper}
        self.pool = pool
        self._jobs_rx, self._writer, self._intake = jobs_rx, writer, intake

        async with trio.open_nursery() as nursery:
            actors: dict[str, _Running] = {}
            for name, actor in self._actors.items():
                actors[name] = await nursery.start(self._supervised, name, actor)
            self._submit = submit_tx
            log.info("runtime %s started: %d workers, %s", owner,
                     cfg.concurrency if cfg.run_workers else 0, self.store.describe())
            task_status.started(self)

            await self._stop.wait()
            # One deadline for the whole drain, so that it ends within shutdown_grace
            # plus OUTCOME_FLUSH, whatever state each actor is in.
            deadline = trio.current_time() + cfg.shutdown_grace
            released_before = pool.stats.released
            log.info("runtime %s draining (grace %.1fs)", owner, cfg.shutdown_grace)
            self._submit = None
            actors["recovery"].scope.cancel()
            await submit_tx.aclose()
            await actors["intake"].finish_by(deadline)
            self._refuse_leftovers(submit_rx)
            if cfg.run_workers:
                # Before the dispatcher stops: a claim still in flight may bring jobs, and
                # they must go back unrun, not start now.
                pool.drain()
                actors["dispatcher"].scope.cancel()
                await actors["dispatcher"].done.wait()
                await jobs_tx.aclose()
                with trio.move_on_at(deadline):
                    await actors["workers"].done.wait()
                pool.cancel_running()
                await self._wait_for_stubborn_handlers(actors["workers"])
                await out_tx.aclose()
                await actors["outcomes"].finish_by(trio.current_time() + OUTCOME_FLUSH)
            nursery.cancel_scope.cancel()
        handed_back = pool.stats.released - released_before
        log.info("runtime %s stopped; its drain handed %s back to the queue", owner,
                 plural(handed_back, "job"))

    async def _wait_for_stubborn_handlers(self, workers: _Running) -> None:
        """Handlers that ignore cancellation (a thread, a shielded flush) run on; their
        leases are renewed until they return, so no peer runs those jobs beside them."""
        with trio.move_on_after(1.0):
            await workers.done.wait()
        while not workers.done.is_set():
            ids = sorted(h.job_id for h in self.pool.running) if self.pool else []
            log.warning("drain: %d handler(s) ignore cancellation and still run (%s); "
                        "keeping their leases until they return", len(ids),
                        ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""))
            with trio.move_on_after(10.0):
                await workers.done.wait()

    @staticmethod
    def _refuse_leftovers(submit_rx: trio.MemoryReceiveChannel[Submission]) -> None:
        while True:
            try:
                _, reply = submit_rx.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            reply.set(NotAccepting("the service is shutting down"))

    async def _supervised(
        self,
        name: str,
        actor: Actor,
        *,
        task_status: trio.TaskStatus[_Running],
    ) -> None:
        running = _Running(trio.CancelScope(), trio.Event())
        health = self._health[name] = ActorHealth()
        try:
            with running.scope:
                task_status.started(running)
                await supervise(name, actor, health, backoff_cap=self.config.restart_backoff_max)
        finally:
            health.state = "stopped"
            running.done.set()

    # ---- what routes call -----------------------------------------------------------------

    async def submit(self, new: NewJob) -> Submitted:
        """Store one job (group-committed with concurrent submits); raise its error if any."""
        if self._submit is None:
            raise NotAccepting("the job runtime is not running")
        reply = Reply()
        try:
            await self._submit.send((new, reply))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise NotAccepting("the service is shutting down") from None
        answer = await reply.wait()
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    async def wait_for_terminal(self, job_id: str, timeout: float) -> Job | None:
        return await self.store.wait_for_terminal(job_id, timeout)

    async def cancel(self, job_id: str, *, audited: bool = False,
                     by: str | None = None) -> Job | None:
        """``audited``: an operator's cancel (the admin API), which the job's audit keeps,
        with ``by``; the store must be an ``AdminStore`` then."""
        if audited:
            job = await admin_of(self.store).cancel_audited(job_id, by=by)
        else:
            job = await self.store.cancel(job_id)
        if job is not None and job.status is JobStatus.IN_PROGRESS:
            # Our own job: stop it now. A peer's job: its lease keeper hears on renewal.
            self.held.cancel(job_id, CancelReason.USER)
        return job

    # ---- observability ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        now = trio.current_time()
        cap = self.config.restart_backoff_max
        return {
            "accepting": self.accepting,
            "actors": {name: {"state": h.state, "restarts": h.restarts,
                              "last_error": h.last_error,
                              "consecutive_failures": h.consecutive_failures,
                              "crash_looping": h.crash_looping(now, cap)}
                       for name, h in self._health.items()},
        }

    def consistency(self) -> list[str]:
        """Check the state the actors share; ``[]`` when it is consistent. For tests (the
        fault simulator calls it all along a run) and for debugging a live instance.

        Holds at every checkpoint, except that a job handed to a worker that has not run
        yet since may be in neither the channel nor the pool: that gap is allowed for.
        """
        pool, jobs = self.pool, self._jobs_rx
        if pool is None or jobs is None or not self.config.run_workers:
            return []
        problems: list[str] = []
        running = set(pool.running)
        credited = self.held.credited()
        if self.held.free < 0 or self.held.free != self.held.capacity - len(credited):
            problems.append(f"credits: {self.held.free} free of {self.held.capacity}, "
                            f"{len(credited)} held with a credit")
        in_channel = jobs.statistics().current_buffer_used
        waiting = [h for h in credited if h not in running]
        if any(h.phase is not Phase.WAITING for h in waiting):
            problems.append("a job holds a credit but is neither waiting nor with a worker")
        if len(waiting) > in_channel + self.config.concurrency:
            problems.append(f"{len(waiting)} jobs wait for a worker, {in_channel} in the "
                            "channel: some wait nowhere")
        for h in self.held:
            if h.phase is Phase.RUNNING and h not in running:
                problems.append(f"job {h.job_id} is held as running but no handler runs it")
        return problems

    def statistics(self) -> RuntimeStatistics:
        """A frozen snapshot of every actor's counters and the store's statistics."""
        def of(name: str) -> Any:
            actor = self._actors.get(name)
            return None if actor is None else actor.statistics()

        return RuntimeStatistics(
            intake=of("intake"), recovery=of("recovery"), store_events=of("store_events"),
            dispatcher=of("dispatcher"), workers=of("workers"), outcomes=of("outcomes"),
            lease_keeper=of("lease_keeper"), held_jobs=len(self.held),
            store=dict(self.store.statistics()))


@dataclasses.dataclass(slots=True)
class _Running:
    scope: trio.CancelScope
    done: trio.Event

    async def finish_by(self, deadline: float) -> None:
        """Let the actor end by itself (its input is closed); past ``deadline``, stop it."""
        with trio.move_on_at(deadline):
            await self.done.wait()
        self.scope.cancel()
        await self.done.wait()
