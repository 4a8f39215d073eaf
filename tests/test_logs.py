"""Logs: JSON lines, and successful ingest posts counted into one line a second."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway import logs
from gateway.logs import AccessLogger, IngestTally, JsonLines
from tests.reliability.gatewayproc import GatewayProcess


def test_json_lines_carry_the_extra_fields_and_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed %s", ("x",), exc_info=sys.exc_info(), extra={"path": "/meter"}
        )
    line = json.loads(JsonLines().format(record))
    assert line["message"] == "failed x" and line["levelname"] == "ERROR" and line["path"] == "/meter"
    assert "ValueError: boom" in line["exc_info"]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access(monkeypatch: pytest.MonkeyPatch) -> tuple[AccessLogger, Lines, logging.Logger]:
    logger = logging.getLogger("test.access")
    lines = Lines()
    logger.handlers[:] = [lines]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    monkeypatch.setattr(logs, "_tallies", {})
    return AccessLogger(logger, ""), lines, logger


def respond(status: int) -> web.Response:
    return web.Response(status=status, body=b"{}")


async def test_successful_ingest_posts_are_counted_and_others_logged(access: Any) -> None:
    logger, lines, _ = access
    logger.log(make_mocked_request("POST", "/meter"), respond(200), 0.002)
    logger.log(make_mocked_request("POST", "/meter"), respond(207), 0.004)
    logger.log(make_mocked_request("POST", "/meter"), respond(409), 0.001)
    logger.log(make_mocked_request("GET", "/healthz"), respond(200), 0.001)
    assert [(r.__dict__["path"], r.__dict__["status"]) for r in lines.records] == [("/meter", 409), ("/healthz", 200)]
    logs._tallies["test.access"].flush()
    tally = lines.records[-1].__dict__
    assert tally["ingest_requests"] == {"/meter": {"200": 1, "207": 1}}
    assert tally["duration_ms_mean"] == 3.0 and tally["duration_ms_max"] == 4.0


async def test_at_debug_every_ingest_post_has_its_line(access: Any) -> None:
    logger, lines, underlying = access
    underlying.setLevel(logging.DEBUG)
    logger.log(make_mocked_request("POST", "/dg"), respond(200), 0.002)
    assert [r.__dict__["path"] for r in lines.records] == ["/dg"]


async def test_a_tally_is_written_when_its_second_is_over_without_another_request(
    access: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, lines, _ = access
    original = IngestTally.flush
    done = asyncio.Event()

    def recording(self: IngestTally) -> None:
        original(self)
        done.set()

    monkeypatch.setattr(logs, "TALLY_SECONDS", 0.01)
    monkeypatch.setattr(IngestTally, "flush", recording)
    logger.log(make_mocked_request("POST", "/meter"), respond(200), 0.002)
    await asyncio.wait_for(done.wait(), 5)
    assert lines.records[-1].__dict__["ingest_requests"] == {"/meter": {"200": 1}}


async def _raw(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client library would send these) and read the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


async def test_requests_aiohttp_cannot_parse_are_logged_by_the_access_log_not_as_errors(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A real `gateway serve` at the default INFO level: each of these got aiohttp's 400 and an
    ERROR line with a traceback, so that any client could fill the error log."""
    gateway = GatewayProcess(sqlite_url, tmp_path, env={"GATEWAY_LOG_LEVEL": "INFO"})
    await gateway.start()
    bad = [
        "GET /api/v1/admin/audit?after=\u0661\u0662 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # not ASCII
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Odd: a\x01b\r\n\r\n",  # a control character in a header
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",  # over 8,190 bytes
        b"POST /meter HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ]
    try:
        for request in bad:
            assert (await _raw(gateway.port, request)).split()[1] == b"400", request[:40]
    finally:
        assert await gateway.stop() == 0
    lines = [json.loads(line) for line in (tmp_path / "gateway.log").read_text().splitlines() if line.startswith("{")]
    assert not [line for line in lines if line["levelname"] in ("ERROR", "CRITICAL")]
    assert sum(line.get("status") == 400 for line in lines) == len(bad)  # each in the access log
