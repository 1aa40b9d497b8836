"""Submit a ProcessData job to the quickstart service and follow it to its end, with the
library's Python client (asyncendpoints_trio.client, sync flavour).

Start the service:  python examples/quickstart.py
Then:               python examples/client.py --data hello
                    python examples/client.py --url http://127.0.0.1:8000 --wait 2

Exit status: 0 Completed; 1 the job Failed or was Canceled; 2 an HTTP problem (the problem's
detail is printed) or no connection. Ctrl-C asks the service to cancel the job (DELETE).
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from asyncendpoints_trio.client import (
    Client,
    ClientError,
    JobCanceled,
    JobFailed,
    JobHandle,
    ProblemError,
)


def describe(problem: ProblemError) -> str:
    """One line for a problem, and one per invalid field of a 422."""
    line = f"HTTP {problem.status} {problem.code or problem.title}: {problem.detail or ''}"
    for error in problem.extensions.get("errors") or ():
        line += f"\n  {error.get('field')}: {error.get('message')}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    parser.add_argument("--data", default="hello", help="ProcessData's 'data' field")
    parser.add_argument("--priority", type=int, default=1)
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds per long-poll (?wait=); the service caps it")
    parser.add_argument("--idempotency-key", default=None,
                        help="the submit's Idempotency-Key (default: a new UUID); the same "
                        "key and body give the same job")
    args = parser.parse_args(argv)

    job: JobHandle | None = None
    # Timeouts, base URL and the like are the httpx client's; the client adds the wait of
    # each long-poll to the read timeout itself.
    with Client(args.url, timeout=10.0, poll_wait=args.wait) as client:
        try:
            job = client.submit("/api/process-data",
                                json={"data": args.data, "processing_priority": args.priority},
                                idempotency_key=args.idempotency_key)
            print(f"submitted job {job.id} ({job.status}): {job.location}")
            for event in job.events():
                if not event.is_terminal:
                    print(f"  {event.status}, attempt {event.job['retryCount'] + 1} of "
                          f"{event.job['maxRetries'] + 1}")
            result = job.result()
        except (JobFailed, JobCanceled) as exc:
            error = exc.job.get("error") or {}
            print(f"job {exc.job_id} {exc.job['status']}"
                  + (f": {error.get('code')}: {error.get('message')}" if error else ""),
                  file=sys.stderr)
            return 1
        except ProblemError as exc:
            print(f"error: {describe(exc)}", file=sys.stderr)
            return 2
        except (ClientError, httpx.HTTPError) as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if job is None:
                return 130
            try:
                state = job.cancel()["status"]
                print(f"\ncancel: job {state}")
            except ProblemError as exc:
                print(f"\ncancel: {describe(exc)}")
            return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
