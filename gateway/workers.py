"""`gateway serve --workers N`: N processes on one port under gunicorn (PostgreSQL only).

gunicorn with aiohttp's own uvloop worker is the multi-process deployment aiohttp documents:
gunicorn's arbiter opens the listening socket once and forks N workers that accept on it,
restarts a worker that dies, turns SIGTERM into a graceful stop of every worker (each one's
writer commits what it accepted) and SIGHUP into a rolling restart. Each worker builds its own
app after the fork: its own engine, connection pools, group-commit writer and scheduler; the
processes share nothing but the database. Imported only for N > 1, so a single process starts
as fast as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from gateway.app import create_app
from gateway.logs import AccessLogger, setup_logging
from gateway.serve import tune_process
from gateway.settings import Settings


class Workers(BaseApplication):  # type: ignore[misc]
    """gunicorn embedded as its documentation shows ("Custom Application"): `gateway serve` stays
    the one command, configured from Settings, not from a second configuration file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        self.cfg.set("bind", [f"{settings.host}:{settings.port}"])
        self.cfg.set("workers", settings.workers)
        self.cfg.set("worker_class", "aiohttp.GunicornUVLoopWebWorker")
        self.cfg.set("loglevel", settings.log_level.lower())
        self.cfg.set("graceful_timeout", 30)  # the writer's last commit and the jobs' clean stop

        def when_ready(_arbiter: object) -> None:
            print(
                f"gateway listening on http://{settings.host}:{settings.port} ({settings.workers} processes)",
                flush=True,
            )

        self.cfg.set("when_ready", when_ready)

        def child_exit(_arbiter: object, worker: object) -> None:
            # A dead worker's live gauges (the writer's queue) must not count any more.
            multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]

        self.cfg.set("child_exit", child_exit)

    def load(self) -> Callable[[], Awaitable[web.AppRunner]]:
        settings = self.settings

        async def worker_app() -> web.AppRunner:  # runs in each worker, after the fork
            setup_logging(settings.log_level)
            app = create_app(settings)
            app.on_startup.append(tune_process)
            return web.AppRunner(app, access_log_class=AccessLogger)

        return worker_app


def serve_workers(settings: Settings) -> None:
    """Serve with `settings.workers` processes until SIGINT or SIGTERM."""
    Workers(settings).run()
