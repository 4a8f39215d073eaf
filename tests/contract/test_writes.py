"""Contract scenarios that change data: ingest, a DG callback, recharges, start/stop.

They run against the suite's own deployment, and against another one only with --allow-writes
(plus --ingest-key for ingest and callbacks). Scenarios that inject head-end faults need the
mock head-end, so they run only locally. Calls 3, 4, 6 and 7 are written against the documented
shapes (DESIGN.md, the Factech document) and skip while the deployment's spec lacks them.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from schemas.dg_callback import verify
from tests.contract.target import Target

RECHARGE, RECHARGE_STATUS = "/api/v1/meter/recharge", "/api/v1/meter/recharge-status"
START, STOP = "/api/v1/meter/start", "/api/v1/meter/stop"


def _ingest_key(target: Target) -> str:
    target.require_writes("posting readings")
    if not target.ingest_key:
        pytest.skip("pass --ingest-key (an API key with role ingest for the site)")
    return target.ingest_key


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_ingest_stores_replays_and_refuses_conflicts(target: Target, meter_no: str) -> None:
    key = _ingest_key(target)
    auth = {"Authorization": f"Bearer {key}"}
    # An interval three days back: the fleet (which posts the recent hours) never sends it.
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(days=3)
    start -= dt.timedelta(minutes=start.minute % 30)
    packet = {"id": int(meter_no), "timestamp": _stamp(start + dt.timedelta(minutes=31)), "reading_kWh": 1.25}
    first = target.checked("POST", "/meter", key=None, headers=auth, json=packet, expect=(200, 409))
    if target.local is not None:
        assert first["message"] == "Reading stored" and first["data"]["interval_start"] == _stamp(start)
    again = target.checked("POST", "/meter", key=None, headers=auth, json=packet, expect=(200, 409))
    if target.local is not None:
        assert again["message"] == "Duplicate reading" and again["data"]["duplicate"] is True
    conflict = target.checked("POST", "/meter", key=None, headers=auth, json={**packet, "reading_kWh": 2.5}, expect=409)
    assert "reading_kWh" in conflict["errors"]
    batch = [{**packet, "timestamp": _stamp(start + dt.timedelta(minutes=61))}, {**packet, "reading_kWh": -1}]
    partial = target.checked("POST", "/meter", key=None, headers=auth, json=batch, expect=(200, 207))
    assert [item["index"] for item in partial["data"]["rejected"]][-1] == 1
    target.checked("POST", "/meter", key=None, json=packet, expect=401)


class _Receiver(BaseHTTPRequestHandler):
    """Records every callback (headers, raw body) and answers 204."""

    received: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.put(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:  # quiet
        return


@pytest.fixture
def receiver(target: Target) -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    """A callback receiver on this machine: (its URL, the callbacks it got)."""
    handler = type("Receiver", (_Receiver,), {"received": queue.Queue()})
    server = ThreadingHTTPServer((target.callback_host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{target.callback_host}:{server.server_port}/dg-events", handler.received
    finally:
        server.shutdown()
        server.server_close()


def _post_dg(target: Target, key: str, dg_number: str, status: str) -> dict[str, Any]:
    packet = {"site_id": target.site_id, "dg_number": dg_number, "timestamp": _stamp(dt.datetime.now(dt.UTC)),
              "status": status, "fuel_litres": "150.00"}  # fmt: skip
    return target.checked("POST", "/dg", key=None, headers={"Authorization": f"Bearer {key}"}, json=packet, expect=200)


def test_dg_going_on_sends_a_signed_callback(target: Target, dg_number: str, receiver: tuple[str, queue.Queue]) -> None:
    key = _ingest_key(target)
    url, received = receiver
    body = {"site_id": target.site_id, "dg_number": dg_number, "url": url}
    sensing = target.checked("POST", "/api/v1/dg/sensing", json=body, expect=200)
    secret = sensing["data"]["secret"]
    _post_dg(target, key, dg_number, "OFF")
    assert _post_dg(target, key, dg_number, "ON")["data"]["status_changed"] is True
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            headers, raw = received.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        event = verify(secret, headers, raw, now=dt.datetime.now(dt.UTC))
        if event["status"] == "ON":
            assert event["site_id"] == target.site_id and event["dg_no"] == dg_number
            assert event["event_id"] == headers["webhook-id"]
            params = {"site_id": target.site_id, "dg_number": dg_number}
            assert target.checked("GET", "/api/v1/dg/status", params=params, expect=200)["data"]["status"] == "ON"
            return
    pytest.fail("no signed ON callback within 20 s")


# Calls 3, 4, 6, 7: through the head-end.


def _faults(target: Target, **faults: Any) -> None:
    deployment = target.require_local("this scenario")
    response = requests.post(f"{deployment.headend_url}/control/faults", json=faults, timeout=10,
                             headers={"Authorization": f"Bearer {deployment.headend_token}"})  # fmt: skip
    assert response.status_code == 200, response.text


@pytest.fixture
def healthy_headend(target: Target) -> Iterator[None]:
    """Faults cleared after the test (locally)."""
    yield
    if target.local is not None:
        _faults(target, unreachable=[], refuse_credits=[], queue_credits_seconds=0)


def _recharge(target: Target, meter_no: str, amount: str, expect: int | tuple[int, ...]) -> dict[str, Any]:
    target.require("POST", RECHARGE)
    target.require_writes("a recharge")
    body = {"site_id": target.site_id, "meter_no": meter_no, "amount": amount}
    headers = {"Idempotency-Key": f"contract-{uuid.uuid4().hex}"}
    return target.checked("POST", RECHARGE, json=body, headers=headers, expect=expect)


def test_recharge_applied(target: Target, meter_no: str) -> None:
    reply = _recharge(target, meter_no, "10.00", 200)
    assert reply["message"] == "Meter Recharged" and reply["data"]["token"]
    target.require("GET", RECHARGE_STATUS)
    params = {"site_id": target.site_id, "transaction_id": reply["data"]["transaction_id"]}
    status = target.checked("GET", RECHARGE_STATUS, params=params, expect=200)
    assert status["status"] == "success" and status["message"] == "Recharge success"


def test_recharge_queued_then_settled(target: Target, meter_no: str, healthy_headend: None) -> None:
    target.require("POST", RECHARGE)
    target.require("GET", RECHARGE_STATUS)
    _faults(target, queue_credits_seconds=1)
    reply = _recharge(target, meter_no, "11.00", 202)
    assert reply["status"] == "waiting" and reply["message"] == "Recharge request is pending"
    params = {"site_id": target.site_id, "transaction_id": reply["data"]["transaction_id"]}
    # The suite's gateway reconciles every 2 s; a check that finds the credit still queued waits
    # 5 s, then 10 s (scheduler/backoff.py) before the next.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = target.checked("GET", RECHARGE_STATUS, params=params, expect=(200, 202))
        if status["status"] == "success":
            return
        assert status["status"] == "waiting"
        time.sleep(1)
    pytest.fail("the queued recharge was not settled within 30 s")


def test_recharge_refused(target: Target, meter_no: str, healthy_headend: None) -> None:
    target.require("POST", RECHARGE)
    _faults(target, refuse_credits=[meter_no])
    reply = _recharge(target, meter_no, "12.00", 422)
    assert reply["status"] == "Error" and reply["message"] == "Not Recharged"


def test_stop_and_start_of_an_unreachable_meter(target: Target, meter_no: str, healthy_headend: None) -> None:
    """Unreachable: "Meter not Accessible" (504) and nothing changes; reachable again, it works."""
    target.require("POST", STOP)
    target.require("POST", START)
    meter = {"site_id": target.site_id, "meter_no": meter_no}
    not_accessible = {"status": "Error", "message": "Operation Not Successful", "Remarks": "Meter not Accessible"}
    _faults(target, unreachable=[meter_no])
    assert target.checked("POST", STOP, json=meter, expect=504) == not_accessible
    _faults(target, unreachable=[])
    assert target.checked("POST", STOP, json=meter, expect=200)["data"]["status"] == "STOPPED"
    _faults(target, unreachable=[meter_no])
    assert target.checked("POST", START, json=meter, expect=504) == not_accessible
    _faults(target, unreachable=[])
    assert target.checked("POST", START, json=meter, expect=200)["data"]["status"] == "STARTED"
