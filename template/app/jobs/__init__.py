"""Background jobs: work that outlives the request that asked for it.

A job is enqueued in the request's own transaction (queue.py), so it exists
exactly when the request's changes do, and is run by the worker
(`python -m commands.worker`), a process of its own, with retries. The queue is
PgQueuer's, in the service's PostgreSQL.
"""
