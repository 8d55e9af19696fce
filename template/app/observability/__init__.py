"""Metrics, traces and error reports: each off until configured (README, "Operating it").

- metrics.py: Prometheus counters and the `/metrics` endpoint (prometheus-client).
- tracing.py: OpenTelemetry spans, exported with OTLP when an endpoint is set;
  statement_spans.py: the span of each SQL statement.
- error_reports.py: Sentry, when SENTRY_DSN is set, with secrets scrubbed.

`app.main` turns each on from the settings; tracing and Sentry are imported only then.
"""

import os


def tracing_configured() -> bool:
    """Whether OpenTelemetry has somewhere to send spans, as its own variables say."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
