"""Supervision: run an actor, restart it with capped exponential backoff when it crashes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from .._backoff import backoff_delay
from .._errors import StoreUnavailable
from ._actor import Actor

log = logging.getLogger("asyncendpoints_trio.supervisor")


# This many crashes in a row, none after a run long enough to reset the count, make an actor
# crash-looping: the liveness probe fails. A stop because the store is unreachable is not a
# crash: restarting the process would not bring the store back, and a liveness probe that
# failed through every store outage would restart a whole healthy fleet at once.
CRASH_LOOP = 3


@dataclass(slots=True)
class ActorHealth:
    state: str = "starting"  # starting | running | backing-off | stopped
    restarts: int = 0
    last_error: str | None = None
    consecutive_failures: int = 0
    running_since: float = 0.0  # trio time the current run began

    def crash_looping(self, now: float, backoff_cap: float) -> bool:
        """Failing again and again: restarted CRASH_LOOP times in a row, and not yet run
        long enough since to call it recovered."""
        return self.consecutive_failures >= CRASH_LOOP and (
            self.state == "backing-off" or now - self.running_since <= backoff_cap)


def root_cause(exc: BaseException) -> BaseException:
    """The exception that matters inside the exception groups nurseries wrap it in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException) -> str:
    """``Type: message`` that cannot raise, whatever the exception's ``__str__`` does."""
    exc = root_cause(exc)
    if isinstance(exc, BaseExceptionGroup):
        first = describe(exc.exceptions[0])
        return f"{len(exc.exceptions)} errors, the first: {first}"
    try:
        text = str(exc)
    except Exception:
        text = "<message not printable>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def supervise(
    name: str,
    actor: Actor,
    health: ActorHealth,
    *,
    backoff_cap: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``actor`` until it returns; after each ``Exception``, settle and restart it.

    Cancellation is never caught here: it is how the runtime stops an actor.
    A run that lasted a while resets the failure count, so a rare crash restarts fast.
    """
    task_status.started()
    failures = 0
    while True:
        health.state = "running"
        started = health.running_since = trio.current_time()
        try:
            await actor.run()
        except Exception as exc:
            if trio.current_time() - started > backoff_cap:
                failures = health.consecutive_failures = 0
            failures += 1
            outage = isinstance(root_cause(exc), StoreUnavailable)
            if not outage:
                health.consecutive_failures += 1
            health.restarts += 1
            health.last_error = describe(exc)
            health.state = "backing-off"
            delay = backoff_delay(failures, backoff_cap)
            if outage:
                # The store's client logs the outage once, and its end; here only a line.
                log.log(logging.INFO if failures == 1 else logging.DEBUG,
                        "actor %s stopped: %s; restarting in %.2fs", name, health.last_error,
                        delay)
            else:
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "actor %s crashed (%s); restarting in %.2fs", name, health.last_error,
                        delay, exc_info=failures == 1)
            try:
                await actor.after_crash(exc)
            except Exception:
                log.exception("actor %s: settling after its crash failed", name)
            await trio.sleep(delay)
        else:
            health.state = "stopped"
            return
