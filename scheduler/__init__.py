"""Scheduled jobs (APScheduler 3): each job is idempotent, takes "now" from the injected clock,
and can be called directly, so tests move time without sleeping."""
