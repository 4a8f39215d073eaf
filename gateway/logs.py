"""Structured logs: one JSON object per line, for the application and the access log.

What a log line costs matters on the ingest path, which answers thousands of requests a second
(profiled with py-spy, default configuration, single packets: the access log took a fifth of the
event loop's time, half of it in python-json-logger's formatting). So:
- lines are serialised by orjson in `JsonLines` (a few µs less per line than the stdlib `json`
  python-json-logger uses, and no per-record field discovery);
- successful ingest posts (`POST /meter`, `POST /dg`, status below 400) are counted, not logged
  one by one: one line a second (`IngestTally`) says how many there were, by path and status,
  their bytes and their mean and slowest duration. Every other request, and every ingest
  request that failed, still gets its own line; at DEBUG successful ingest posts do too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

INGEST_PATHS = frozenset({"/meter", "/dg"})
TALLY_SECONDS = 1.0

# The attributes every LogRecord has: anything else on a record came from `extra`.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, the `extra` fields, and the
    traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's line (without the newline)."""
        line: dict[str, Any] = {
            "asctime": self.formatTime(record),
            "levelname": record.levelname,
            "name": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class ClientMistakesAtDebug(logging.Filter):
    """Lowers to DEBUG what aiohttp's server logs at ERROR, with a traceback, about requests it
    could not parse (bytes that are not ASCII in the path, an over-long or control character in
    a header, an unknown method) and about clients that hang up mid-request.

    Neither is the gateway's fault, and the access log already has the 400 it answered; at
    ERROR, any client could fill the error log with tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False (dropped) for such a record unless DEBUG is on; True for every other record."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError | ConnectionResetError):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def setup_logging(level: str = "INFO") -> None:
    """Send every log record to standard error as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientMistakesAtDebug) for f in server.filters):
        server.addFilter(ClientMistakesAtDebug())


class IngestTally:
    """Successful ingest requests counted over `TALLY_SECONDS`, then logged as one line."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._counts: dict[tuple[str, int], int] = {}
        self._bytes = 0
        self._seconds = 0.0
        self._slowest = 0.0
        self._since = 0.0  # monotonic start of the open window; 0: none open

    def add(self, path: str, status: int, size: int, seconds: float) -> None:
        """Count one request (called on the event loop)."""
        key = (path, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._bytes += size
        self._seconds += seconds
        if seconds > self._slowest:
            self._slowest = seconds
        if not self._since:
            self._since = time.monotonic()
            # The line is written when the window closes, even if no request follows.
            asyncio.get_running_loop().call_later(TALLY_SECONDS, self.flush)

    def flush(self) -> None:
        """Log the open window's line and start afresh."""
        if not self._since:
            return
        requests = sum(self._counts.values())
        by_path: dict[str, dict[str, int]] = {}
        for (path, status), count in sorted(self._counts.items()):
            by_path.setdefault(path, {})[str(status)] = count
        self._logger.info(
            "%d ingest requests in %.1f s",
            requests,
            time.monotonic() - self._since,
            extra={
                "ingest_requests": by_path,
                "bytes": self._bytes,
                "duration_ms_mean": round(self._seconds * 1000 / requests, 2),
                "duration_ms_max": round(self._slowest * 1000, 2),
            },
        )
        self._counts = {}
        self._bytes = 0
        self._seconds = self._slowest = self._since = 0.0


_tallies: dict[str, IngestTally] = {}  # per logger name: aiohttp makes an AccessLogger per connection


class AccessLogger(AbstractAccessLogger):
    """One structured record per request (method, path, status, size, duration), except
    successful ingest posts, which `IngestTally` counts unless DEBUG is on."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._tally = _tallies.get(logger.name) or _tallies.setdefault(logger.name, IngestTally(logger))

    @property
    def enabled(self) -> bool:
        """Skip building the record when INFO is off (aiohttp asks before each request)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log (or count) one request."""
        path, status = request.path, response.status
        if status < 400 and path in INGEST_PATHS and not self.logger.isEnabledFor(logging.DEBUG):
            self._tally.add(path, status, response.body_length, time)
            return
        self.logger.info(
            "%s %s %s",
            request.method,
            path,
            status,
            extra={
                "remote": request.remote,
                "method": request.method,
                "path": path,
                "status": status,
                "bytes": response.body_length,
                "duration_ms": round(time * 1000, 2),
            },
        )
