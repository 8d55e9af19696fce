"""The worker's settings: JOBS_*, read from the environment and `.env` like the rest.

Apart from app/core/config.py because only the worker reads them (the API just
enqueues), and each has a default that suits production.
"""

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class JobSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Runs of a job, the first included, before it is kept as failed (`commands.jobs list`).
    JOBS_MAX_ATTEMPTS: int = Field(default=8, ge=1)
    # The delay before the first retry; each retry waits about twice as long as the one
    # before (less a random part, so that jobs failed together do not retry together),
    # up to JOBS_RETRY_MAX_DELAY_SECONDS. The defaults span about 40 minutes in all.
    JOBS_RETRY_DELAY_SECONDS: float = Field(default=10.0, gt=0)
    JOBS_RETRY_MAX_DELAY_SECONDS: float = Field(default=1800.0, gt=0)
    # A job whose worker stopped sending heartbeats for this long (killed, cut off)
    # is taken again by another worker.
    JOBS_VISIBILITY_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0)
    # Jobs one worker runs at the same time.
    JOBS_CONCURRENCY: int = Field(default=10, ge=2)
    # A queued job no worker knows (its function renamed or removed) is failed after
    # this long: during a rolling deployment, the new release's workers may still come.
    JOBS_UNKNOWN_JOB_GRACE_SECONDS: float = Field(default=600.0, ge=0)
    # A file the worker touches every LIVENESS_INTERVAL seconds while its event loop and
    # its queue connection answer: a liveness probe checks its age (Kubernetes' does).
    JOBS_LIVENESS_FILE: Path | None = None
    # The port where the worker serves its metrics (app/observability/job_metrics.py) to
    # Prometheus, without authentication: open it only where Prometheus alone reaches.
    JOBS_METRICS_PORT: int | None = Field(default=None, gt=0, lt=65536)


def load_job_settings() -> JobSettings:
    """The JOBS_* settings, or an exit that says which is wrong (no traceback, no value)."""
    try:
        return JobSettings()
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise SystemExit(f"Invalid settings (environment or .env):\n{problems}") from None
