"""Metrics, traces and error reports: each off until configured (README, "Operating it").

- metrics.py: Prometheus counters and the `/metrics` endpoint (prometheus-client).
- tracing.py: OpenTelemetry spans, exported with OTLP when an endpoint is set;
  statement_spans.py: the span of each SQL statement.
- error_reports.py: Sentry, when SENTRY_DSN is set, with secrets scrubbed.

`app.main` turns each on from the settings, once, as it builds the app; tracing and
Sentry are imported only then.
"""
