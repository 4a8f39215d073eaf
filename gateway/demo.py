"""`gateway demo`: the whole system on one machine, without hardware.

1. Migrates the SQLite database in the data directory and seeds the demo once (`demo_seed`).
2. Starts `mock-meter-server` as child processes: the head-end (with a bearer token) that the
   gateway's HTTP head-end client is pointed at, and one fleet per site posting `/meter` and
   `/dg` with that site's ingest key (the fleet simulator serves one site per process).
3. Serves the gateway in this process, through the same `serve()` as `gateway serve`, with the
   children opened and closed as cleanup contexts of the app: the head-end around the gateway's
   own resources, the fleets inside them. SIGINT/SIGTERM (and SIGHUP) stop the gateway, which
   terminates and waits for every child before it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway import demo_seed
from gateway.demo_text import Banner, banner
from gateway.settings import Settings
from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.errors import DomainError

HOST = "127.0.0.1"
STOP_SECONDS = 10.0  # a child that ignores SIGTERM this long is killed
HEADEND_START_SECONDS = 30.0
FLEET_PROGRESS_SECONDS = 10


def say(line: str) -> None:
    """A progress line."""
    print(line, flush=True)


@dataclass(frozen=True)
class Plan:
    """What the seeded database holds that the children and the banner need."""

    sites: list[demo_seed.DemoSite]
    swap: demo_seed.MeterSwap
    state: demo_seed.DemoState
    meter_files: dict[str, Path]  # site_id -> the fleet's meter file
    active: dict[str, int]  # site_id -> active meters
    dg_registers: dict[str, str]  # site_id -> the DG's stored register, kWh
    data_dir: Path = Path("var")  # where the head-end keeps its relay states across restarts


async def prepare(data_dir: Path, database_url: str, meters: int) -> Plan:
    """Migrate, seed what is missing, and write each fleet's meter file."""
    db = Database(database_url)
    try:
        await upgrade(db)
        say(f"demo: database {data_dir / 'gateway.db'} migrated")
        sites, swap, state = await demo_seed.ensure_demo(
            db, state_path=data_dir / "demo.json", meters=meters, progress=say
        )
        files, active, registers = {}, {}, {}
        for site in sites:
            numbers = await demo_seed.active_meters(db, site_id=site.site_id)
            files[site.site_id] = data_dir / f"demo-meters-{site.site_id}.txt"
            files[site.site_id].write_text("".join(f"{n}\n" for n in numbers))
            active[site.site_id] = len(numbers)
            registers[site.site_id] = str(await demo_seed.dg_register(db, site_id=site.site_id, dg_no=site.dg_no))
        return Plan(sites, swap, state, files, active, registers, data_dir)
    finally:
        await db.dispose()


@dataclass
class Child:
    """A running child process and the task copying its output with a prefix."""

    name: str
    process: asyncio.subprocess.Process
    relay: asyncio.Task[None]


async def _relay(name: str, stream: asyncio.StreamReader) -> None:
    """Copy a child's output line by line, tagged, so several children stay readable."""
    while line := await stream.readline():
        print(f"[{name}] {line.decode(errors='replace').rstrip()}", flush=True)


class Children:
    """The demo's child processes: started in order, stopped together, always waited for."""

    def __init__(self) -> None:
        self.running: list[Child] = []

    async def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """Start `python -m mock_meter_server ARGS` (secrets go by environment, not argv)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mock_meter_server",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            # Its own session: a terminal's Ctrl-C reaches only the demo, which then stops each
            # child once (a child signalled twice exits mid-cleanup with status 1).
            start_new_session=True,
        )
        assert process.stdout is not None
        child = Child(name, process, asyncio.create_task(_relay(name, process.stdout)))
        self.running.append(child)
        say(f"demo: started {name} (pid {process.pid})")
        return child

    async def stop(self) -> None:
        """SIGTERM every child still running, wait (kill after STOP_SECONDS), drain their output."""
        for child in reversed(self.running):
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile (a terminal Ctrl-C)
                    child.process.terminate()
        for child in self.running:
            try:
                await asyncio.wait_for(child.process.wait(), STOP_SECONDS)
            except TimeoutError:
                child.process.kill()
                await child.process.wait()
            await child.relay
            say(f"demo: {child.name} stopped (pid {child.process.pid}, exit {child.process.returncode})")
        self.running.clear()


async def wait_healthy(url: str, child: Child) -> None:
    """Wait until the child answers `url` with 200; RuntimeError if it exits or takes too long."""
    deadline = time.monotonic() + HEADEND_START_SECONDS
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while starting")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {HEADEND_START_SECONDS:g} s")


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def headend_context(plan: Plan, *, port: int) -> CleanupContext:
    """The mock head-end: up before the gateway's own resources (its head-end client may call
    at start-up), stopped after them (a reconcile still running can finish its calls).
    """

    async def context(_app: web.Application) -> AsyncIterator[None]:
        children = Children()
        # The children do not share the terminal's hang-up: closing the terminal must stop the
        # demo the way SIGTERM does (children stopped), not kill it and leave them behind.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, os.kill, os.getpid(), signal.SIGTERM)
        try:
            headend = await children.start(
                "head-end",
                [
                    *("--host", HOST, "--port", str(port), "--log-level", "WARNING"),
                    *("--state-file", str(plan.data_dir / "headend-relays.json")),
                ],
                {"MOCK_METER_SERVER_TOKEN": plan.state.headend_token},
            )
            await wait_healthy(f"http://{HOST}:{port}/healthz", headend)
            say(f"demo: mock head-end ready on http://{HOST}:{port}")
            yield
        finally:
            await children.stop()
            loop.remove_signal_handler(signal.SIGHUP)

    return context


def fleets_context(plan: Plan, *, gateway: str, speed: float) -> CleanupContext:
    """A fleet per site (the simulator serves one site per process): started once the gateway's
    resources are open, stopped first, so no packet meets a gateway shutting down.
    """

    async def context(_app: web.Application) -> AsyncIterator[None]:
        children = Children()
        try:
            for site in plan.sites:
                await children.start(
                    f"fleet {site.site_id}",
                    [
                        # The fleet's own head-end is unused: any free port, the same token.
                        *("--host", HOST, "--port", "0", "--log-level", "WARNING"),
                        *("--gateway", gateway, "--meter-file", str(plan.meter_files[site.site_id])),
                        *("--site-id", site.site_id, "--dgs", site.dg_no),
                        *("--dg-start-kwh", plan.dg_registers[site.site_id], "--speed", f"{speed:g}"),
                        *("--progress-seconds", str(FLEET_PROGRESS_SECONDS)),
                        # Every site's replay runs its DG (half way through the 24 hours at the
                        # latest), so the DG calls 10-13 and the residents' DG run log show something.
                        *("--dg-run-by", "24"),
                    ],
                    {
                        "MOCK_METER_SERVER_TOKEN": plan.state.headend_token,
                        "MOCK_FLEET_INGEST_KEY": plan.state.keys[f"demo-ingest-{site.site_id}"],
                    },
                )
            yield
        finally:
            await children.stop()

    return context


def receiver_context(listener: socket.socket) -> CleanupContext:
    """A local receiver for the DG callbacks of call 11 (on a port bound beforehand, so the
    banner can name it): it prints what it got and answers 200."""

    async def received(request: web.Request) -> web.Response:
        body = await request.text()
        say(f"[callback receiver] {request.method} {request.path}: {body[:300]}")
        return web.json_response({"received": True})

    async def context(_app: web.Application) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_post("/{tail:.*}", received)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        try:
            yield
        finally:
            await runner.cleanup()

    return context


def check_port_free(port: int, flag: str) -> None:
    """Refuse early, with the flag to change, when a port is taken (before any child starts)."""
    with socket.socket() as probe:
        # As the servers will: a port with connections in TIME_WAIT (a demo just stopped) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            raise DomainError(f"cannot listen on {HOST}:{port} ({exc.strerror}); choose another {flag}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Prepare, start the children and serve until SIGINT/SIGTERM; 0 on a clean stop."""
    if not 2 <= args.meters <= 200:
        print("error: --meters must be between 2 and 200", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("error: --speed must be positive", file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir
    # Always the data directory's SQLite, never GATEWAY_DATABASE_URL: the demo seeds what it
    # finds, and must not seed demo sites and keys into a real database.
    database_url = f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"
    base, headend = f"http://{HOST}:{args.port}", f"http://{HOST}:{args.headend_port}"
    try:
        check_port_free(args.port, "--port")
        check_port_free(args.headend_port, "--headend-port")
        data_dir.mkdir(parents=True, exist_ok=True)
        say(f"demo: data in {data_dir}/")
        plan = asyncio.run(prepare(data_dir, database_url, args.meters))
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("demo: interrupted while preparing; run it again to finish")
        return 0
    listener = socket.create_server((HOST, 0))  # the callback receiver's port, known for the banner
    callback_url = f"http://{HOST}:{listener.getsockname()[1]}/dg-events"
    settings = settings.with_overrides(
        # The receiver is on this machine: the demo lets callbacks go to private addresses.
        callback_allow_private=True,
        database_url=database_url,
        host=HOST,
        port=args.port,
        headend_url=headend,
        headend_token=plan.state.headend_token,
        # Access logs of a fleet catching up would bury the banner: quieter unless asked.
        log_level=os.environ.get("GATEWAY_LOG_LEVEL", "WARNING"),
    )
    green = next(site for site in plan.sites if site.site_id == "GREENPARK")
    text = banner(
        Banner(
            base=base,
            headend=headend,
            headend_token=plan.state.headend_token,
            data_dir=str(data_dir),
            sites=[(s.site_id, s.region, plan.active[s.site_id]) for s in plan.sites],
            site_id=green.site_id,
            meter_no=green.meters[0].meter_no,
            other_meter_no=green.meters[min(1, len(green.meters) - 1)].meter_no,
            dg_no=green.dg_no,
            change_site_id=plan.swap.site_id,
            change_date=plan.state.meter_change_date or "",
            keys=plan.state.keys,
            callback_url=callback_url,
        )
    )
    from gateway.serve import serve

    try:
        serve(
            settings,
            before=[headend_context(plan, port=args.headend_port), receiver_context(listener)],
            after=[fleets_context(plan, gateway=base, speed=args.speed)],
            on_listening=lambda: say(text),
        )
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say("demo: stopped")
    return 0
