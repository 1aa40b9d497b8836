"""What the runtime shows of itself: metrics, traces, and their exposition.

``_recorder`` counts what jobs do, per job name; ``_instrumented`` times every store call;
``_prometheus`` turns both (and the actors' statistics) into a Prometheus page at scrape
time; ``_otel`` offers the same numbers as OpenTelemetry instruments; ``_tracing`` makes the
spans of a job's submit and of each attempt.
"""
