"""Prometheus metrics of the background jobs, labelled by job name (a fixed set: the keys
of JOBS in app/jobs/registry.py).

Enqueueing is counted where it happens, in the API (its `GET /metrics`); the runs'
outcomes and the queue's state by the worker, which serves them on JOBS_METRICS_PORT.
"""

from prometheus_client import Counter, Gauge

JOBS_ENQUEUED = Counter(
    "jobs_enqueued",
    "Jobs enqueued, by job (counted at the INSERT: a transaction rolled back after it too).",
    ["job"],
)
JOBS_SUCCEEDED = Counter("jobs_succeeded", "Job runs that succeeded, by job.", ["job"])
JOBS_RETRIED = Counter("jobs_retried", "Job runs that failed and will be retried, by job.", ["job"])
JOBS_FAILED = Counter(
    "jobs_failed", "Jobs out of attempts, kept as failed (commands.jobs list), by job.", ["job"]
)
JOBS_READY = Gauge(
    "jobs_ready", "Jobs due to run now and waiting for a worker.", multiprocess_mode="max"
)
JOBS_OLDEST_READY_AGE = Gauge(
    "jobs_oldest_ready_age_seconds",
    "How long the oldest job due to run has waited for a worker (0: none waits).",
    multiprocess_mode="max",
)
