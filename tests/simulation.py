"""A seeded fault simulator: several runtimes on one shared store, with everything going wrong.

One run, from a seed:

- 2 to 4 instances (``Runtime``s), each behind its own ``FaultyStore`` link to one shared
  ``MemoryStore``, on Trio's ``MockClock``. The links fail, lose replies after applying,
  delay requests and replies, and now and then answer with an error reply.
- Jobs whose handlers are drawn at random per attempt: return, raise (every kind, including
  exceptions whose ``str()`` raises and non-retryable ones), overrun the timeout, ignore
  cancellation (shielded), swallow it, fail inside a nursery, return huge or unserializable
  results.
- Random submits and cancels through any instance; random instance crashes (its link dies,
  its actors stop, nothing more is written), restarts (sometimes under the same instance id),
  partitions that stall an instance's link past the lease, and graceful shutdowns.

Then the faults stop, a clean instance finishes the work, and the run is checked (see
``check``). Everything random comes from the seed, and Trio's scheduler is seeded too, so a
failing seed replays exactly: ``SIM_SEED=<n> pytest tests/test_simulation.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
import trio.testing

from asyncendpoints_trio import (
    AsyncContext,
    EndpointsConfig,
    HandlerRegistry,
    Job,
    JobStatus,
    MemoryStore,
    NewJob,
    NonRetryableError,
    RetryPolicy,
    Runtime,
    StoreError,
    Submitted,
)
from asyncendpoints_trio._handlers import make_spec

from .faultstore import Fault, FaultyStore

LEASE_TTL = 2.0
HEARTBEAT = 0.5
HANDLER_TIMEOUT = 3.0
MAX_RESULT = 2_000
HORIZON = 40.0  # virtual seconds of chaos
SETTLE = 900.0  # virtual seconds the clean finish may take, at most

BEHAVIOURS = ("return", "return", "return", "raise", "unprintable", "nonretryable",
              "timeout", "shield", "swallow", "group", "huge", "unserializable")
COOPERATIVE = frozenset(BEHAVIOURS) - {"shield"}


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


@dataclass
class Run:
    """One attempt at a job, as the handler saw it."""

    run_id: str
    job_id: str
    instance: str  # the incarnation: a name, and which start of that name
    token: int
    attempt: int
    behaviour: str
    start: float
    end: float | None = None
    returned: bool = False


class Stores(MemoryStore):
    """The shared store, noting when each lease was reclaimed (its deadline passed)."""

    def __init__(self) -> None:
        super().__init__(retention=10_000.0)
        self.reclaimed: dict[tuple[str, int], float] = {}
        self.claimed_by: dict[tuple[str, int], tuple[str, float]] = {}  # -> (owner, when)

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> Any:
        claimed = await super().claim(owner, limit, lease_ttl)
        for c in claimed:
            self.claimed_by[(c.job.id, c.lease.token)] = (owner, trio.current_time())
        return claimed

    def _expire(self, job: Job) -> bool:
        self.reclaimed.setdefault((job.id, job.token), trio.current_time())
        return super()._expire(job)


@dataclass
class Instance:
    name: str
    key: str  # this incarnation: a restart under the same name is another one
    runtime: Runtime
    link: FaultyStore
    scope: trio.CancelScope
    crashed: bool = False
    crashed_at: float | None = None
    started_at: float = 0.0
    stopping_at: float | None = None
    ended_at: float | None = None
    stopped: bool = False
    done: trio.Event = field(default_factory=trio.Event)


@dataclass
class Simulation:
    seed: int
    rng: random.Random = field(init=False)
    store: Stores = field(default_factory=Stores)
    instances: list[Instance] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # the submit raised: 503 to the client
    cancels: int = 0
    violations: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    fault_rate: float = 0.0
    steps: int = 0
    _next: int = 0
    _crash_times: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # ---- handlers --------------------------------------------------------------------------

    def handlers(self, instance: str, runtime: list[Runtime]) -> HandlerRegistry:
        sim = self

        async def handle(ctx: AsyncContext[Any]) -> Any:
            plan = sim.plans[ctx.job_id]
            behaviour = plan[ctx.attempt - 1] if ctx.attempt <= len(plan) else "return"
            held = runtime[0].held.get(ctx.job_id)
            assert held is not None, "a handler runs for a job its instance does not hold"
            sim._next += 1
            run = Run(f"r{sim._next}", ctx.job_id, instance, held.lease.token, ctx.attempt,
                      behaviour, trio.current_time())
            sim.runs[run.run_id] = run
            sim.trace.append(f"{run.start:.3f} start {run.run_id} {ctx.job_id[:8]} {instance}")
            try:
                value = await sim._behave(behaviour, ctx, run)
                run.returned = True
                return value
            finally:
                run.end = trio.current_time()
                sim.trace.append(f"{run.end:.3f} end {run.run_id}")

        reg = HandlerRegistry()
        policy = RetryPolicy(max_retries=3, base_delay=0.2, max_delay=2.0, jitter=0.5,
                             non_retryable=(LookupError,))
        reg.add(make_spec("Sim", handle, retry=policy, timeout=HANDLER_TIMEOUT,
                          request_type=Any, result_type=Any))
        return reg

    async def _behave(self, behaviour: str, ctx: AsyncContext[Any], run: Run) -> Any:
        seconds = float(ctx.request["seconds"][min(ctx.attempt, 4) - 1])
        if behaviour == "return":
            await trio.sleep(seconds)
            return {"run": run.run_id}
        if behaviour == "raise":
            await trio.sleep(seconds / 2)
            raise ValueError(f"attempt {ctx.attempt} failed")
        if behaviour == "unprintable":
            raise Unprintable
        if behaviour == "nonretryable":
            raise NonRetryableError("never again")
        if behaviour == "timeout":
            await trio.sleep(HANDLER_TIMEOUT * 3)
            return {"run": run.run_id}
        if behaviour == "shield":
            with trio.CancelScope(shield=True):
                await trio.sleep(seconds * 3)
            return {"run": run.run_id}
        if behaviour == "swallow":
            try:
                await trio.sleep(seconds)
            except trio.Cancelled:
                return {"run": run.run_id, "swallowed": True}
            return {"run": run.run_id}
        if behaviour == "group":
            async def fails() -> None:
                await trio.sleep(seconds / 3)
                raise KeyError("a child failed")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                nursery.start_soon(fails)
        if behaviour == "huge":
            return {"run": run.run_id, "pad": "x" * (MAX_RESULT * 2)}
        if behaviour == "unserializable":
            return {"run": run.run_id, "bad": object()}
        raise AssertionError(behaviour)

    # ---- faults ----------------------------------------------------------------------------

    def chaos(self, rng: random.Random) -> Any:
        def pick(method: str) -> Fault | None:
            if self.fault_rate == 0 or rng.random() >= self.fault_rate:
                return None
            kind = rng.choice(("fail", "fail", "lose", "lose", "delay", "slow_reply",
                               "error" if method == "finish" else "fail"))
            return Fault(kind, rng.uniform(0.05, LEASE_TTL))

        return pick

    # ---- instances ---------------------------------------------------------------------------

    async def start_instance(self, nursery: trio.Nursery, name: str | None = None) -> Instance:
        rng = self.rng
        name = name or f"i{len(self.instances)}"
        config = EndpointsConfig(
            concurrency=rng.randint(1, 4), prefetch=rng.randint(0, 2),
            lease_ttl=LEASE_TTL, heartbeat_interval=HEARTBEAT, recovery_interval=0.3,
            shutdown_grace=rng.choice((0.0, 0.3, 1.0)), restart_backoff_max=0.5,
            retention=10_000.0, max_result_bytes=MAX_RESULT, instance_id=name,
            max_queued=None)
        holder: list[Runtime] = []
        key = f"{name}#{len(self.instances)}"
        link = FaultyStore(self.store, chaos=self.chaos(random.Random(rng.random())))
        runtime = Runtime(link, self.handlers(key, holder), config,
                          rng=random.Random(rng.random()))
        holder.append(runtime)
        instance = Instance(name, f"{name}#{len(self.instances)}", runtime, link,
                            trio.CancelScope(), started_at=trio.current_time())

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with instance.scope:
                    await runtime.run(task_status=task_status)
            finally:
                instance.ended_at = trio.current_time()
                instance.done.set()

        await nursery.start(run)
        self.instances.append(instance)
        self.trace.append(f"{trio.current_time():.3f} up {name}")
        return instance

    def live(self) -> list[Instance]:
        return [i for i in self.instances if not i.crashed and not i.stopped]

    def crash(self, instance: Instance) -> None:
        instance.crashed = True
        instance.crashed_at = trio.current_time()
        instance.link.kill()  # nothing it still tries reaches the store
        instance.scope.cancel()
        self.trace.append(f"{trio.current_time():.3f} crash {instance.name}")

    async def stop(self, instance: Instance) -> None:
        instance.stopped = True
        instance.stopping_at = trio.current_time()
        self.trace.append(f"{trio.current_time():.3f} stop {instance.name}")
        instance.runtime.stop()
        await instance.done.wait()
        self.check_instance(instance, stopped=True)

    # ---- the workload ----------------------------------------------------------------------

    async def submit(self, instance: Instance) -> None:
        rng = self.rng
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.plans[job_id] = [rng.choice(BEHAVIOURS) for _ in range(rng.randint(1, 4))]
        request = {"seconds": [round(rng.uniform(0.05, 1.5), 3) for _ in range(4)]}
        new = NewJob(id=job_id, name="Sim", payload=orjson.dumps(request),
                     max_retries=rng.randint(0, 3))
        try:
            answer = await instance.runtime.submit(new)
        except StoreError:
            self.refused.add(job_id)
            return
        except Exception as exc:  # NotAccepting, or a bug
            if type(exc).__name__ != "NotAccepting":
                self.violations.append(f"submit raised {exc!r}")
            return
        assert isinstance(answer, Submitted)
        self.accepted.add(job_id)

    async def cancel(self, instance: Instance) -> None:
        known = sorted(self.accepted)
        if not known:
            return
        self.cancels += 1
        with contextlib.suppress(StoreError):
            await instance.runtime.cancel(self.rng.choice(known))

    async def partition(self, instance: Instance) -> None:
        instance.link.pause()
        self.trace.append(f"{trio.current_time():.3f} pause {instance.name}")
        await trio.sleep(self.rng.uniform(LEASE_TTL * 0.5, LEASE_TTL * 2.5))
        instance.link.resume()
        self.trace.append(f"{trio.current_time():.3f} resume {instance.name}")

    async def checker(self) -> None:
        while True:
            await trio.sleep(0.05)
            for instance in self.live():
                for problem in instance.runtime.consistency():
                    self.violations.append(f"{trio.current_time():.3f} {instance.name}: "
                                           f"{problem}")

    async def run(self) -> None:
        rng = self.rng
        self.fault_rate = rng.choice((0.0, 0.02, 0.05, 0.1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.checker)
            for _ in range(rng.randint(2, 4)):
                await self.start_instance(nursery)
            async with trio.open_nursery() as actions:
                end = trio.current_time() + HORIZON
                while trio.current_time() < end:
                    await trio.sleep(rng.expovariate(4.0))
                    live = self.live()
                    roll = rng.random()
                    if not live:
                        await self.start_instance(nursery)
                    elif roll < 0.6:
                        actions.start_soon(self.submit, rng.choice(live))
                    elif roll < 0.7:
                        actions.start_soon(self.cancel, rng.choice(live))
                    elif roll < 0.76:
                        self.crash(rng.choice(live))
                    elif roll < 0.80:
                        actions.start_soon(self.stop, rng.choice(live))
                    elif roll < 0.85:
                        actions.start_soon(self.partition, rng.choice(live))
                    elif roll < 0.90 and len(live) < 4:
                        # A restart; sometimes under a dead instance's id, like a pod.
                        # Never beside a still-running process of that name (one draining).
                        taken = {i.name for i in self.instances if not i.done.is_set()}
                        dead = sorted({i.name for i in self.instances if i.crashed} - taken)
                        reuse = bool(dead) and rng.random() < 0.5
                        await self.start_instance(nursery, rng.choice(dead) if reuse else None)
            # The chaos ends: links heal, a clean instance joins, the work finishes.
            self.fault_rate = 0.0
            for instance in self.live():
                instance.link.clear()
                instance.link.resume()
            await self.start_instance(nursery, "finisher")
            with trio.move_on_after(SETTLE):
                for job_id in sorted(self.accepted | self.refused):
                    job = await self.store.wait_for_terminal(job_id, SETTLE)
                    while job is not None and not job.is_terminal:
                        job = await self.store.wait_for_terminal(job_id, SETTLE)
            for instance in self.live():
                await self.stop(instance)
            nursery.cancel_scope.cancel()
        await self.check()

    # ---- the invariants --------------------------------------------------------------------

    def check_instance(self, instance: Instance, *, stopped: bool) -> None:
        rt = instance.runtime
        name = instance.name
        if stopped and rt.held.busy:
            self.violations.append(f"{name}: {rt.held.busy} credits still taken after its "
                                   "drain")
        restarts = {actor: h["restarts"] for actor, h in rt.health()["actors"].items()}
        for actor in ("workers", "outcomes", "lease_keeper", "store_events", "intake"):
            if restarts.get(actor):
                self.violations.append(f"{name}: actor {actor} restarted "
                                       f"{restarts[actor]} times")
        link = instance.link
        budget = {"dispatcher": link.injected("claim") + link.injected("leases_of")
                  + link.injected("finish"),
                  "recovery": link.injected("recover")}
        for actor, allowed in budget.items():
            if restarts.get(actor, 0) > allowed:
                self.violations.append(f"{name}: actor {actor} restarted {restarts[actor]} "
                                       f"times with {allowed} faults that could cause it")

    def _check_reclaims(self) -> None:
        """A lease may expire only when its holder could not keep it: the holder crashed,
        or its link failed or stalled in the lease's last stretch. A live instance on a
        healthy link renews every lease it holds, drain included, until it hands the job
        back."""
        window = 3 * LEASE_TTL
        for (job_id, token), at in sorted(self.store.reclaimed.items()):
            owner, claimed_at = self.store.claimed_by.get((job_id, token), ("", 0.0))
            # The incarnation that made the claim: one process of a name lives at a time.
            holders = [i for i in self.instances if i.name == owner
                       and i.started_at <= claimed_at
                       and (i.ended_at is None or i.ended_at >= claimed_at)]
            excused = any(
                (i.crashed_at is not None and i.crashed_at <= at)
                or i.link.troubled(at - window, at)
                or (i.stopping_at is not None and i.link.troubled(i.stopping_at, at))
                for i in holders)
            if holders and not excused:
                self.violations.append(
                    f"job {job_id}: the lease of token {token} held by {owner} expired at "
                    f"{at:.3f}, though that instance lived on a healthy link")

    async def check(self) -> None:
        self._check_reclaims()
        for instance in self.instances:
            if not instance.crashed and not instance.stopped:
                self.violations.append(f"{instance.name} still running at the end")
            if not instance.crashed:
                self.check_instance(instance, stopped=True)
        runs_of: dict[str, list[Run]] = {}
        for run in self.runs.values():
            runs_of.setdefault(run.job_id, []).append(run)
        for job_id in sorted(self.accepted | self.refused):
            job = await self.store.get(job_id)
            if job_id in self.refused and job is None:
                continue  # refused and never stored: the client was told, nothing to do
            if job is None or not job.is_terminal:
                self.violations.append(f"job {job_id}: not terminal at the end "
                                       f"({job.status if job else 'missing'})")
                continue
            runs = sorted(runs_of.get(job_id, []), key=lambda r: (r.start, r.token))
            self._check_runs(job_id, runs)
            if job.status is JobStatus.COMPLETED:
                self._check_result(job_id, job.result, job.token, runs)
            if job.retry_count > job.max_retries:
                self.violations.append(f"job {job_id}: {job.retry_count} retries for "
                                       f"max_retries {job.max_retries}")

    def _ended(self, run: Run) -> float | None:
        """When the run ended, or when its process died: a crash (kill -9) ends even a
        handler that ignores cancellation, which the simulation cannot do to a task."""
        crashed = self._crash_times.get(run.instance)
        if crashed is not None and (run.end is None or run.end > crashed):
            return crashed
        return run.end

    def _check_runs(self, job_id: str, runs: list[Run]) -> None:
        self._crash_times = {i.key: i.crashed_at for i in self.instances
                             if i.crashed_at is not None}
        for i, first in enumerate(runs):
            first_end = self._ended(first)
            for later in runs[i + 1:]:
                if first_end is None or later.start >= first_end:
                    if first_end is None:
                        self.violations.append(f"job {job_id}: run {first.run_id} never ended")
                    continue
                if later.token <= first.token:
                    self.violations.append(f"job {job_id}: runs {first.run_id} and "
                                           f"{later.run_id} at once under one lease")
                    continue
                reclaimed = self.store.reclaimed.get((job_id, first.token))
                if reclaimed is None or reclaimed > later.start:
                    self.violations.append(
                        f"job {job_id}: run {later.run_id} ({later.instance}) started at "
                        f"{later.start:.3f} while {first.run_id} ({first.instance}) ran, and "
                        "the first one's lease had not expired")
        for run in runs:
            reclaimed = self.store.reclaimed.get((job_id, run.token))
            end = self._ended(run)
            if (reclaimed is not None and run.behaviour in COOPERATIVE and end is not None
                    and end > reclaimed):
                self.violations.append(
                    f"job {job_id}: cooperative run {run.run_id} ({run.instance}) ended at "
                    f"{end:.3f}, after its lease was reclaimed at {reclaimed:.3f}")

    def _check_result(self, job_id: str, result: bytes | None, token: int,
                      runs: list[Run]) -> None:
        try:
            run_id = orjson.loads(result or b"null")["run"]
        except Exception:
            self.violations.append(f"job {job_id}: Completed with result {result!r}")
            return
        run = self.runs.get(run_id)
        if run is None or run.job_id != job_id:
            self.violations.append(f"job {job_id}: its result comes from run {run_id}")
        elif run.token != token:
            self.violations.append(f"job {job_id}: result written by run {run_id} under "
                                   f"token {run.token}, the job's token is {token}")
        elif not run.returned:
            self.violations.append(f"job {job_id}: result of run {run_id}, which never "
                                   "returned")

    def digest(self) -> str:
        return hashlib.blake2b("\n".join(self.trace).encode(), digest_size=8).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"seed": self.seed, "instances": len(self.instances),
                "jobs": len(self.accepted), "refused": len(self.refused),
                "runs": len(self.runs), "cancels": self.cancels,
                "crashes": sum(i.crashed for i in self.instances),
                "faults": sum(i.link.injected() for i in self.instances),
                "reclaimed": len(self.store.reclaimed), "steps": self.steps}


def task_tree() -> str:
    """Where every task waits: for a run that hung."""
    lines: list[str] = []

    def frames(task: trio.lowlevel.Task) -> str:
        where = []
        coro: Any = task.coro
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                where.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return " > ".join(where)

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        lines.append("  " * depth + f"{task.name}: {frames(task)}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(lines)


MAX_STEPS = 500_000  # task steps in one run; a healthy one takes about 10,000


class StepLimit(trio.abc.Instrument):
    """Ends a run that livelocks: tasks that keep running while no virtual time passes
    would never reach the watchdog's deadline."""

    def __init__(self, sim: Simulation, scope: trio.CancelScope) -> None:
        self.sim, self.scope, self.steps = sim, scope, 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1
        if self.steps == MAX_STEPS:
            self.sim.violations.append(f"livelock: {MAX_STEPS} task steps by virtual time "
                                       f"{trio.current_time():.3f}; its tasks:\n"
                                       + task_tree())
            self.scope.cancel()


async def simulate(seed: int) -> Simulation:
    """One seeded run on a fresh MockClock; the caller runs it with ``trio.run``."""
    sim = Simulation(seed)
    async with trio.open_nursery() as nursery:
        limit = StepLimit(sim, nursery.cancel_scope)
        trio.lowlevel.add_instrument(limit)
        async def watchdog() -> None:
            await trio.sleep(HORIZON + SETTLE + 600)
            sim.violations.append("the run hung; its tasks:\n" + task_tree())
            nursery.cancel_scope.cancel()

        nursery.start_soon(watchdog)
        await sim.run()
        nursery.cancel_scope.cancel()
    trio.lowlevel.remove_instrument(limit)
    sim.steps = limit.steps
    return sim


def run_seed(seed: int) -> Simulation:
    # Trio shuffles ready tasks at random to shake out ordering bugs; seeding its generator
    # makes a run repeat exactly, so a failing seed can be replayed.
    # (pytest-trio does the same for Hypothesis tests.)
    core: Any = trio._core._run
    core._r.seed(seed)
    was = core._ALLOW_DETERMINISTIC_SCHEDULING
    core._ALLOW_DETERMINISTIC_SCHEDULING = True
    random.seed(seed)  # the supervisor's and the backoff helper's jitter
    clock = trio.testing.MockClock(autojump_threshold=0)
    result: list[Simulation] = []

    async def main() -> None:
        result.append(await simulate(seed))

    try:
        trio.run(main, clock=clock)
    finally:
        core._ALLOW_DETERMINISTIC_SCHEDULING = was
    return result[0]

