"""Submit a ProcessData job to the quickstart service and long-poll it until it ends.

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
import time
from typing import Any

import httpx

TERMINAL = {"Completed", "Failed", "Canceled"}


def describe_problem(response: httpx.Response) -> str:
    """One line for an error answer: problem+json fields when there are some."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {body!r}"
    label = body.get("code") or body.get("title", "")
    line = f"HTTP {response.status_code} {label}: {body.get('detail', '')}"
    for error in body.get("errors") or ():
        line += f"\n  {error.get('field')}: {error.get('message')}"
    return line


class Problem(Exception):
    """An answer that is not the one we asked for; its message is the problem's detail."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(describe_problem(response))


def submit(
    client: httpx.Client, data: str, priority: int, key: str | None
) -> tuple[dict[str, Any], str]:
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post("/api/process-data",
                           json={"data": data, "processing_priority": priority},
                           headers=headers)
    if response.status_code != 202:
        raise Problem(response)
    job = response.json()
    # Location is relative (/jobs/<id>); resolve it against the URL we posted to.
    location = response.headers.get("Location") or f"/jobs/{job['id']}"
    return job, str(response.url.join(location))


def follow(client: httpx.Client, job_url: str, wait: float) -> dict[str, Any]:
    """GET the job with ?wait= until it is terminal; return its last state."""
    while True:
        started = time.monotonic()
        response = client.get(job_url, params={"wait": wait})
        if response.status_code != 200:
            raise Problem(response)
        job: dict[str, Any] = response.json()
        if job["status"] in TERMINAL:
            return job
        print(f"  {job['status']}, attempt {job['retryCount'] + 1} of {job['maxRetries'] + 1}")
        # The service caps ?wait= (max_wait). If it answered well before our wait ran out,
        # long-polling is capped or off: pause as its Retry-After says before asking again.
        if time.monotonic() - started < wait / 2:
            time.sleep(float(response.headers.get("Retry-After", "1")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    parser.add_argument("--data", default="hello", help="ProcessData's 'data' field")
    parser.add_argument("--priority", type=int, default=1)
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds per long-poll (?wait=); the service caps it")
    parser.add_argument("--idempotency-key", default=None,
                        help="send Idempotency-Key: the same key and body give the same job")
    args = parser.parse_args(argv)

    # The read timeout must outlast one long-poll.
    timeout = httpx.Timeout(10.0, read=args.wait + 10.0)
    job_url = None
    with httpx.Client(base_url=args.url, timeout=timeout) as client:
        try:
            job, job_url = submit(client, args.data, args.priority, args.idempotency_key)
            print(f"submitted job {job['id']} ({job['status']}): {job_url}")
            job = follow(client, job_url, args.wait)
        except Problem as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except httpx.HTTPError as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if job_url is None:
                return 130
            answer = client.delete(job_url)
            state = answer.json().get("status") if answer.status_code < 300 else None
            print(f"\ncancel: HTTP {answer.status_code}"
                  + (f", job {state}" if state else f" ({describe_problem(answer)})"))
            return 130

    if job["status"] == "Completed":
        print(json.dumps(job["result"], indent=2))
        return 0
    error = job.get("error") or {}
    print(f"job {job['id']} {job['status']}"
          + (f": {error.get('code')}: {error.get('message')}" if error else ""),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
