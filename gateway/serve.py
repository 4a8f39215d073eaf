"""Run the gateway HTTP server in this process (several processes: gateway/workers.py)."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from gateway.app import create_app
from gateway.logs import AccessLogger, setup_logging
from gateway.settings import Settings

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def serve(
    settings: Settings,
    *,
    before: Sequence[CleanupContext] = (),
    after: Sequence[CleanupContext] = (),
    on_listening: Callable[[], None] | None = None,
    build: Callable[[Settings], web.Application] = create_app,
) -> None:
    """Serve until interrupted (SIGINT or SIGTERM); prints where it listens.

    Extra cleanup contexts (`gateway demo` runs its child processes this way): `before` open
    ahead of the app's own resources and close after them, `after` open after them and close
    first. `on_listening` runs once the port is open. `build` makes the app (the crash tests
    wrap `create_app`'s, tests/reliability/faulty_gateway.py).
    """
    setup_logging(settings.log_level)
    import uvloop

    app = build(settings)
    app.cleanup_ctx[:0] = before
    app.cleanup_ctx.extend(after)
    app.on_startup.append(tune_process)

    def listening(_: str) -> None:
        print(f"gateway listening on http://{settings.host}:{settings.port}", flush=True)
        if on_listening is not None:
            on_listening()

    web.run_app(
        app,
        loop=uvloop.new_event_loop(),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=listening,
    )


SWITCH_INTERVAL = 0.0005  # seconds


async def tune_process(_app: web.Application) -> None:
    """The process-wide runtime settings of a serving process, set once at start-up.

    The thread switch interval: the ingest writer's thread needs the GIL back as soon as its
    database call returns; by default a waiting thread may wait 5 ms for the event loop to let
    go, which stretched every group commit.

    Garbage collection: exempt what start-up built (modules, the app, SQLAlchemy's caches).

    A large reply (a 10,000-meter site) allocates enough objects to trigger full collections,
    which otherwise walk every long-lived object of the process each time (measured: about a
    third of call 1's CPU time).
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()
    # Young collections every 700 allocations cost a few per cent of each ingest request (a
    # request allocates hundreds of short-lived objects); every 20,000 is still frequent.
    gc.set_threshold(20_000, 10, 10)
