"""The deployment kit in deploy/, each file tried with the real program it is for: the systemd
unit with `systemd-analyze`, the alert rules with `promtool` and a real Prometheus scraping a
running gateway, the nginx site with Debian's nginx in front of a running gateway.

A test whose program is missing fails on CI (CI=true: `.ci/run` installs them) and is skipped
with the reason elsewhere.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def require(program: str) -> str:
    """The program's path; without it: fail on CI, skip (saying why) elsewhere."""
    path = shutil.which(program) or next(
        (str(p) for p in (Path("/usr/sbin") / program, Path("/sbin") / program) if p.exists()), None
    )
    if path is None:
        reason = f"{program} is not installed (Debian: apt-get install {PACKAGES.get(program, program)})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(reason)
    return path


PACKAGES = {"promtool": "prometheus", "systemd-analyze": "systemd", "nginx": "nginx", "prometheus": "prometheus"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: object, timeout: float = 30.0) -> None:
    """Poll `check()` until it is true; each poll is a real request, bounded by a deadline."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.1)


def answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def running(command: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped with SIGTERM (then killed) when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def gateway_port(tmp_path: Path) -> Iterator[int]:
    """`gateway serve` on SQLite in tmp_path, on a free port, once /readyz answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    with running(command, tmp_path / "gateway.log", cwd=tmp_path, env=env) as process:
        wait_for(
            f"the gateway answers /readyz ({(tmp_path / 'gateway.log')})",
            lambda: process.poll() is None and answers(f"http://127.0.0.1:{port}/readyz"),
        )
        yield port


# systemd


def test_systemd_unit_verifies_and_is_sandboxed(tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    unit = (DEPLOY / "meter-gateway.service").read_text()
    # The unit as installed by the README, with this checkout's paths (verify checks they exist).
    gateway = Path(sys.executable).with_name("gateway")
    unit = unit.replace("/opt/meter-gateway/venv/bin/gateway", str(gateway)).replace(
        "/etc/meter-gateway/", f"{tmp_path}/"
    )
    (tmp_path / "gateway.env").write_text("GATEWAY_WORKERS=2\n")
    (tmp_path / "meter-gateway.service").write_text(unit)
    verified = subprocess.run(
        [analyze, "verify", str(tmp_path / "meter-gateway.service")], capture_output=True, text=True
    )
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
    # `security` scores the sandboxing from 0 (locked down) to 10; fail above 2.
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(tmp_path / "meter-gateway.service")],
        capture_output=True,
        text=True,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


# Prometheus


def test_alert_rules_pass_promtool() -> None:
    promtool = require("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus-alerts.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


def metric_names_in(expression: str) -> set[str]:
    """The gateway metric families an expression reads (suffixes of histograms and counters cut)."""
    names = set(re.findall(r"\bgateway_[a-z_]+", expression))
    return {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in names}


def test_dashboard_and_alerts_read_only_metrics_the_gateway_exports(gateway_port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/metrics") as response:
        exported = {family.name for family in text_string_to_metric_families(response.read().decode())}
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += re.findall(
        r"expr: (?:\|\n)?(.+?)\n\s+(?:for|labels):", (DEPLOY / "prometheus-alerts.yml").read_text(), re.S
    )
    read = set().union(*(metric_names_in(expression) for expression in expressions))
    assert read >= {
        "gateway_http_request_duration_seconds",
        "gateway_headend_call_seconds",
        "gateway_writer_queue_readings",
    }
    assert read - exported == set()


def test_a_real_prometheus_scrapes_the_gateway_and_loads_the_alert_rules(gateway_port: int, tmp_path: Path) -> None:
    prometheus = require("prometheus")
    port = free_port()
    scrape = (DEPLOY / "prometheus-scrape.yml").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{gateway_port}")
    scrape = scrape.replace("scrape_interval: 15s", "scrape_interval: 1s")
    config = (
        f"global:\n  evaluation_interval: 1s\nrule_files:\n  - {DEPLOY / 'prometheus-alerts.yml'}\nscrape_configs:\n"
    )
    config += "".join(f"  {line}\n" for line in scrape.splitlines() if not line.startswith("#"))
    (tmp_path / "prometheus.yml").write_text(config)
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expression: str) -> list[dict[str, object]]:
        with urllib.request.urlopen(f"{api}/query?query={urllib.parse.quote(expression)}", timeout=5) as response:
            return json.loads(response.read())["data"]["result"]  # type: ignore[no-any-return]

    command = [
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(command, tmp_path / "prometheus.log") as process:
        wait_for("Prometheus is ready", lambda: process.poll() is None and answers(f"http://127.0.0.1:{port}/-/ready"))
        wait_for(
            "Prometheus scraped the gateway",
            lambda: [r["value"][1] for r in query('up{job="meter-gateway"}')] == ["1"],  # type: ignore[index]
        )
        # A request the gateway counted, as Prometheus stored it: labels as the dashboard uses them.
        wait_for(
            "the gateway's request metrics reached Prometheus",
            lambda: query('gateway_http_request_duration_seconds_count{job="meter-gateway", route="/readyz"}') != [],
        )
        with urllib.request.urlopen(f"{api}/rules", timeout=5) as response:
            groups = json.loads(response.read())["data"]["groups"]
        loaded = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        assert len(loaded) == 9 and "GatewayDown" in loaded
        wait_for("every alert rule evaluated without error", lambda: _rules_health(api) == {"ok"})


def _rules_health(api: str) -> set[str]:
    with urllib.request.urlopen(f"{api}/rules", timeout=5) as response:
        groups = json.loads(response.read())["data"]["groups"]
    return {rule["health"] for group in groups for rule in group["rules"]}


# nginx


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made now (nothing secret is committed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextmanager
def nginx_in_front_of(upstream_port: int, tmp_path: Path) -> Iterator[tuple[int, int, ssl.SSLContext]]:
    """deploy/'s nginx site, on free ports and a fresh certificate, proxying to `upstream_port`."""
    nginx = require("nginx")
    cert, key = self_signed(tmp_path)
    http_port, https_port = free_port(), free_port()
    site = (DEPLOY / "nginx-meter-gateway.conf").read_text()
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
    site = (
        site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl")
        .replace("/etc/ssl/meter-gateway/fullchain.pem", str(cert))
        .replace("/etc/ssl/meter-gateway/privkey.pem", str(key))
    )
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach tmp_path's temp files
    (tmp_path / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx-error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log {tmp_path}/nginx-access.log;\n"
        + "".join(
            f"  {kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {tmp_path}/site.conf;\n}}\n"
    )
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    context = ssl.create_default_context(cafile=str(cert))
    command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]
    with running(command, tmp_path / "nginx.log") as process:
        wait_for(
            "nginx answers over TLS",
            lambda: process.poll() is None and _connects(https_port),
        )
        yield http_port, https_port, context


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_nginx_site_serves_the_gateway_over_tls(gateway_port: int, tmp_path: Path) -> None:
    with nginx_in_front_of(gateway_port, tmp_path) as (http_port, https_port, context):
        base = f"https://127.0.0.1:{https_port}"
        with urllib.request.urlopen(f"{base}/readyz", context=context) as response:
            assert response.status == 200 and json.loads(response.read())["status"] == "ok"
        # Plain HTTP only redirects to HTTPS.
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/readyz")
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(request)
        redirect.value.close()
        assert redirect.value.code == 301 and redirect.value.headers["Location"].startswith("https://")
        # The gateway's gzip passes through nginx untouched.
        asset = urllib.request.Request(f"{base}/portal/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(asset, context=context) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(response.read()).startswith(b"/**")
        # A body under nginx's limit but over the gateway's gets the gateway's own JSON 413;
        # one far over is cut off by nginx without reaching the gateway.
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {ingest_key(tmp_path)}"}
        for size, answered_by_gateway in ((2 * 1024 * 1024 + 10, True), (4 * 1024 * 1024, False)):
            post = urllib.request.Request(f"{base}/meter", data=b"[" + b" " * size + b"]", headers=auth)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(post, context=context)
            assert refused.value.code == 413
            with refused.value:
                body = refused.value.read()
            assert (body.startswith(b"{") and json.loads(body)["status"] == "error") is answered_by_gateway


def ingest_key(data_dir: Path) -> str:
    """An ingest key of a new site, made with the CLI beside the running gateway (same database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--json"], cwd=data_dir, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("site", "add", "NGINX", "--name", "Behind nginx", "--region", "North")
    return str(json.loads(cli("key", "create", "--name", "nginx-ingest", "--role", "ingest", "--site", "NGINX"))["key"])


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None


async def test_nginx_site_sets_the_forwarded_headers_and_replaces_a_spoofed_client_address(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(
            {
                name: request.headers.get(name, "")
                for name in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP", "Host")
            }
        )
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    async with TestServer(app, host="127.0.0.1") as server:
        with nginx_in_front_of(server.port, tmp_path) as (_http, https_port, context):
            connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as session:
                headers = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"}
                async with session.get(f"https://127.0.0.1:{https_port}/api/v1/site/readings", headers=headers) as r:
                    assert r.status == 200
    assert seen == [
        {
            "X-Forwarded-For": "127.0.0.1",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "127.0.0.1",
            "X-Real-IP": "127.0.0.1",
            "Host": "127.0.0.1",
        }
    ]
