"""Prometheus metrics of the HTTP layer, and `/metrics`' exposition for one process or many.

With `gateway serve --workers N` every worker counts in its own process; prometheus-client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the CLI before any metric exists: see
`gateway.metrics_dir`) keeps each worker's values in a file there, and a scrape of any worker reads them
all, so counters add up across workers whichever one answers.

Every request is timed by route and status. The hot path (ingest) is benchmarked against a bare
aiohttp handler, so the cost per request is kept to two clock reads, one dict lookup and one
`observe`: each (route, status) pair's child is bound once and kept.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Histogram(
    "gateway_http_request_duration_seconds",
    "HTTP requests by route, method and status: latency; _count counts them",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNMATCHED = "unmatched"  # any path no route serves: one label value, whatever the path was
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# (route or None, method, status) → the histogram child for it; bounded by routes × statuses.
_children: dict[tuple[Any, str, int], Any] = {}


def _child(request: web.BaseRequest, status: int) -> Any:
    route = request.match_info.route
    resource = route.resource
    # An unmatched request gets a fresh route object each time: key it by nothing, not by it.
    key = (resource and route, request.method, status)
    child = _children.get(key)
    if child is None:
        label = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in KNOWN_METHODS else "other"
        child = _children[key] = REQUESTS.labels(label, method, str(status))
    return child


def count_request(request: web.BaseRequest, status: int, started: float) -> None:
    """Time (since `started`, a `perf_counter` reading) and count one request by route, method and
    the status it was answered with (called once per request by `gateway.middleware`)."""
    _child(request, status).observe(time.perf_counter() - started)


def multiprocess_dir() -> str | None:
    """The directory the workers share their metrics in, when there are several."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
