"""`/healthz` latency while six clients log in to the portal in loops (issue 18: Argon2 on the loop).

Starts `gateway serve` on a fresh SQLite file with one staff account, runs six login loops
(each: GET the form for its CSRF token, POST the right password) and samples `/healthz` every
20 ms for `--seconds`, then prints the median and p95 latency of `/healthz` and the logins per
second. Each loop sends its own X-Forwarded-For from the trusted 127.0.0.1 so the per-address
limit (300 per 15 minutes) does not turn logins into cheap 429s during the run. Unpinned by
default (a deployment hashes on every core it has); `--pin` puts the gateway on CPU 0 and this
client on CPU 1.

    .venv/bin/python -m bench.login_latency [--seconds 10] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time

import aiohttp

from bench.common import data_dir, free_port, machine, pin_client

LOOPS = 6
PASSWORD = "a long staff password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_staff(url: str) -> None:
    """The staff account the loops log in to (`--site` where the gateway has staff scopes)."""
    command = [sys.executable, "-m", "gateway.cli", "user", "add", "--staff", "bench", "--password-stdin"]
    help_text = subprocess.run([*command[:5], "--help"], capture_output=True, text=True, check=True).stdout
    if "--site" in help_text:
        command += ["--site", "*"]
    env = {**os.environ, "GATEWAY_DATABASE_URL": url}
    subprocess.run(command, input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True)


async def login_loop(base: str, number: int, stop: asyncio.Event, counts: list[int]) -> None:
    headers = {"X-Forwarded-For": f"10.0.0.{number + 1}"}
    async with aiohttp.ClientSession(headers=headers, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        while not stop.is_set():
            async with http.get(f"{base}/management-dashboard/login") as page:
                token = CSRF.search(await page.text())
            assert token, "no CSRF token"
            form = {"login": "bench", "password": PASSWORD, "csrf_token": token.group(1)}
            async with http.post(f"{base}/management-dashboard/login", data=form, allow_redirects=False) as reply:
                assert reply.status == 303, reply.status
            counts[number] += 1


async def sample_healthz(base: str, seconds: float) -> list[float]:
    timings = []
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with http.get(f"{base}/healthz") as response:
                await response.read()
            timings.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    return timings


async def wait_until_up(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the gateway did not start within 30 s")


async def run(port: int, seconds: float) -> None:
    base = f"http://127.0.0.1:{port}"
    await wait_until_up(base)
    idle = await sample_healthz(base, 2)
    stop, counts = asyncio.Event(), [0] * LOOPS
    loops = [asyncio.create_task(login_loop(base, n, stop, counts)) for n in range(LOOPS)]
    await asyncio.sleep(1)  # warm-up
    before = sum(counts)
    loaded = await sample_healthz(base, seconds)
    logins = sum(counts) - before
    stop.set()
    await asyncio.gather(*loops)
    for name, values in (("idle", idle), ("six login loops", loaded)):
        ordered = sorted(values)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        print(f"/healthz {name}: median {statistics.median(values):.1f} ms, p95 {p95:.1f} ms, n={len(values)}")
    print(f"logins: {logins / seconds:.1f}/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--pin", action="store_true", help="gateway on CPU 0, this client on CPU 1")
    args = parser.parse_args()
    cpu = pin_client() if args.pin else ""
    print(machine())
    with data_dir() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/gateway.db"
        add_staff(url)
        port = free_port()
        env = {
            **os.environ,
            "GATEWAY_DATABASE_URL": url,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
            "GATEWAY_SCHEDULER": "off",
        }
        command = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if cpu:
            command = ["taskset", "-c", cpu, *command]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(run(port, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
