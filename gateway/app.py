"""The one app factory: `create_app(settings)` wires every route, middleware and resource."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from adapters.headend import SimulatedHeadEnd
from adapters.headend_http import HttpHeadEnd, open_session
from adapters.webhooks import open_sender
from gateway import (
    admin,
    admin_users,
    audit,
    docs,
    factech_actions,
    factech_reads,
    ingest,
    ops,
    portal,
    prepaid,
    reports,
    site_reports,
)
from gateway import statements as statement_routes
from gateway.app_keys import (
    ALERTS,
    CALLBACKS,
    CLOCK,
    DB,
    DELIVERIES,
    DEVICES,
    DISPATCHER,
    HEADEND,
    KEYS,
    LEGACY,
    PARTITIONS,
    RECONCILER,
    ROLLUP,
    RUNNER,
    SCHEDULER,
    SETTINGS,
    WRITER,
)
from gateway.auth import DeviceTokenCache, KeyCache, LegacyMeters
from gateway.middleware import gateway_middleware
from gateway.settings import Settings
from scheduler.alerts import BalanceAlertJob
from scheduler.backup import BackupJob
from scheduler.deliveries import DeliveryJob
from scheduler.dispatcher import CommandDispatcher
from scheduler.partitions import PartitionJob
from scheduler.reconcile import ReconcileJob
from scheduler.rollup import RollupJob
from scheduler.runner import Job, JobRunner, start_scheduler, stop_scheduler
from storage.clock import Clock
from storage.db.engine import Database
from storage.db.migrate import current_revision, head_revision, upgrade
from storage.ingest.writer import ReadingWriter
from storage.ops.locks import database_lock
from storage.ops.notify import credential_changes
from storage.registry import meters as meter_registry

log = logging.getLogger("gateway")


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """Build the gateway application for these settings (and a clock, for tests)."""
    # One middleware (metrics, gzip, the error envelope, the portal's pages), not four layers.
    app = web.Application(
        middlewares=[gateway_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or Clock()
    app.cleanup_ctx.extend([database, reading_writer, headend, callback_sender, scheduled_jobs])
    app.add_routes(ops.routes)
    app.add_routes(ingest.routes)
    app.add_routes(reports.routes)
    app.add_routes(factech_reads.routes)
    app.add_routes(factech_actions.routes)
    app.add_routes(admin.routes)
    app.add_routes(prepaid.routes)
    app.add_routes(statement_routes.routes)
    app.add_routes(site_reports.routes)
    app.add_routes(audit.routes)
    app.add_routes(admin_users.routes)
    app.add_routes(docs.routes)
    portal.setup(app)
    return app


async def database(app: web.Application) -> AsyncIterator[None]:
    """Open the database for the app's life; migrate the SQLite default, check PostgreSQL."""
    settings = app[SETTINGS]
    db = Database(settings.database_url)
    # Held while the app runs, so `gateway restore` cannot replace the file under it.
    lock = database_lock(db)
    if lock is not None and not lock.try_acquire(exclusive=False):
        raise RuntimeError(f"{db.sqlite_path} is being restored (`gateway restore` holds {lock.path}): start after it")
    try:
        await prepare_database(db)
        app[DB] = db
        app[KEYS] = keys = KeyCache(db)
        app[DEVICES] = devices = DeviceTokenCache(db)
        app[LEGACY] = legacy = LegacyMeters(db)
        await warn_of_legacy_meters(db)

        def forget_credentials() -> None:  # another process revoked or rotated something
            keys.clear()
            devices.clear()
            legacy.clear()

        async with credential_changes(db, forget_credentials):
            yield
    finally:
        await db.dispose()
        if lock is not None:
            lock.release()


async def warn_of_legacy_meters(db: Database) -> None:
    """Say loudly at start that some meters post without a token (anyone can post for them)."""
    meters = sorted(await meter_registry.legacy_meters(db))
    if meters:
        shown = ", ".join(str(m) for m in meters[:20]) + (f" and {len(meters) - 20} more" if len(meters) > 20 else "")
        log.warning(
            "LEGACY INGEST: %d meter(s) may post readings WITHOUT A TOKEN (%s); anyone who can reach "
            "/meter can post for them. Give them device tokens and turn it off: "
            "`gateway meter legacy-ingest METER_NO off`",
            len(meters),
            shown,
        )


async def scheduled_jobs(app: web.Application) -> AsyncIterator[None]:
    """The background jobs (unless GATEWAY_SCHEDULER=off); each one's first run is the catch-up.

    Every run goes through the app's `JobRunner`: with several processes on one PostgreSQL
    database each job runs in one of them only.
    """
    settings, db = app[SETTINGS], app[DB]
    app[ROLLUP] = rollup = RollupJob(db, app[CLOCK], every_minutes=settings.rollup_every_minutes)
    app[DELIVERIES] = deliveries = DeliveryJob(
        db,
        app[CLOCK],
        app[CALLBACKS],
        every_seconds=settings.callback_every_seconds,
        horizon=dt.timedelta(hours=settings.callback_horizon_hours),
    )
    # Longer than any head-end call: a command or recharge this old without an answer was
    # orphaned by a process that died, not still in flight.
    orphaned_after = settings.orphaned_after
    app[DISPATCHER] = dispatcher = CommandDispatcher(
        db,
        app[HEADEND],
        app[CLOCK],
        every_seconds=settings.commands_every_seconds,
        stale_seconds=orphaned_after,
        deadline_minutes=settings.command_deadline_minutes,
    )
    app[RECONCILER] = reconciler = ReconcileJob(
        db,
        app[HEADEND],
        app[CLOCK],
        every_seconds=settings.reconcile_every_seconds,
        expiry_minutes=settings.recharge_expiry_minutes,
        grace_seconds=orphaned_after,
    )
    app[PARTITIONS] = partitions = PartitionJob(db, app[CLOCK], retention_days=settings.retention_days)
    app[ALERTS] = alerts = BalanceAlertJob(db, app[CLOCK], every_seconds=settings.alerts_every_seconds)
    jobs: list[Job] = [rollup, deliveries, dispatcher, reconciler, partitions, alerts]
    if db.is_sqlite:
        jobs.append(
            BackupJob(
                db,
                app[CLOCK],
                directory=settings.backup_path,
                keep=settings.backup_keep,
                every_minutes=settings.backup_every_minutes,
            )
        )
    else:
        log.info("no backup job on PostgreSQL: back it up with pg_dump (README, Operations)")
    app[RUNNER] = runner = JobRunner(db)
    scheduler = start_scheduler(jobs, runner) if settings.scheduler else None
    if scheduler is not None:
        app[SCHEDULER] = scheduler
    try:
        yield
    finally:
        if scheduler is not None:
            await stop_scheduler(scheduler, jobs)
        else:  # jobs may still have been kicked (a callback, a prompt restore): let those finish
            for job in jobs:
                await job.stop()
        await runner.close()


async def callback_sender(app: web.Application) -> AsyncIterator[None]:
    """The one HTTP client for DG callbacks, open for the app's life."""
    async with open_sender(allow_private=app[SETTINGS].callback_allow_private) as sender:
        app[CALLBACKS] = sender
        yield


async def headend(app: web.Application) -> AsyncIterator[None]:
    """The head-end: HTTP with one client session for the app's life, else the simulator."""
    settings = app[SETTINGS]
    if not settings.headend_url:
        app[HEADEND] = SimulatedHeadEnd(app[DB])
        yield
        return
    token = settings.headend_token.get_secret_value() if settings.headend_token else None
    session = open_session(token=token, attempt_seconds=settings.headend_attempt_seconds)
    app[HEADEND] = HttpHeadEnd(session, settings.headend_url, deadline=settings.headend_deadline_seconds)
    try:
        yield
    finally:
        await session.close()


async def prepare_database(db: Database) -> None:
    """Migrate the embedded SQLite default; refuse a PostgreSQL database behind the code."""
    current, head = await current_revision(db), head_revision()
    if db.is_sqlite:
        if current != head:  # Alembic's own no-op upgrade reads every script: ~20 ms a start
            await upgrade(db)
        return
    if current != head:
        raise RuntimeError(
            f"database is at migration {current or 'none'}, the code needs {head}: run `gateway db upgrade`"
        )


async def reading_writer(app: web.Application) -> AsyncIterator[None]:
    """The group-commit writer for ingest; on shutdown it commits what it already accepted."""
    settings = app[SETTINGS]
    writer = ReadingWriter(
        app[DB],
        app[CLOCK],
        max_queue=settings.writer_queue_packets,
        max_batch=settings.writer_batch_packets,
    )
    writer.start()
    app[WRITER] = writer
    yield
    await writer.close()
