"""The HTTP head-end client against a real HTTP server on 127.0.0.1: the mock meter server with
injected latency, 5xx and dropped connections, and a bare server for what the mock never says.

What must hold: retries happen on what is safe, the deadline holds, nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.headend import Outcome
from adapters.headend_http import HttpHeadEnd, open_session
from tests.command_setup import MockHeadEnd, StepClock

# How far past its deadline a call may return on a loaded machine: the point is that it stops.
SLACK = 0.5

MakeHeadEnd = Callable[..., HttpHeadEnd]


@pytest.fixture
async def make_headend() -> AsyncIterator[MakeHeadEnd]:
    """HttpHeadEnds with short timings (a test's session closes with it)."""
    sessions: list[aiohttp.ClientSession] = []

    def make(url: str, *, attempt: float = 1.0, deadline: float = 3.0, token: str | None = "t0k") -> HttpHeadEnd:
        session = open_session(token=token, attempt_seconds=attempt)
        sessions.append(session)
        return HttpHeadEnd(session, url, deadline=deadline, backoff_initial=0.01, backoff_max=0.05)

    yield make
    for session in sessions:
        await session.close()


async def test_injected_5xx_are_retried_and_the_relay_switches_once(
    mock: MockHeadEnd, make_headend: MakeHeadEnd
) -> None:
    await mock.faults(fail_next=3)
    result = await make_headend(mock.url).relay(101, command_id="c-1", on=False)
    assert result.outcome is Outcome.APPLIED and result.relay_on is False and result.changed is True
    state = await mock.state()
    assert state["counts"] == {"requests": 4, "failed": 3}
    assert state["meters"]["101"]["relay"] == "off" and state["commands"] == 1


async def test_a_reply_lost_after_the_credit_is_retried_and_credits_once(
    mock: MockHeadEnd, make_headend: MakeHeadEnd
) -> None:
    await mock.faults(drop_next=2, drop_when="after")
    result = await make_headend(mock.url).credit(101, transaction_id="T1", amount=Decimal("250.50"))
    assert result.outcome is Outcome.APPLIED
    assert result.token is not None and len(result.token) == 20 and result.token.isdigit()
    state = await mock.state()
    assert state["counts"]["dropped"] == 2 and state["counts"]["requests"] == 3
    assert state["meters"]["101"]["credited"] == "250.50"  # applied by the first attempt, answered by the third


async def test_a_connection_dropped_before_acting_is_retried(mock: MockHeadEnd, make_headend: MakeHeadEnd) -> None:
    await mock.faults(drop_next=1, drop_when="before")
    result = await make_headend(mock.url).set_load(
        101, command_id="L1", load_dg=Decimal("2.50"), load_grid=Decimal("7")
    )
    assert result.outcome is Outcome.APPLIED
    assert (result.load_dg, result.load_grid) == (Decimal("2.50"), Decimal("7.00"))
    assert (await mock.state())["meters"]["101"]["load_grid"] == "7.00"


async def test_latency_past_every_attempt_gives_up_within_the_deadline_and_a_resend_applies_once(
    mock: MockHeadEnd, make_headend: MakeHeadEnd
) -> None:
    await mock.faults(latency_ms=700)
    headend = make_headend(mock.url, attempt=0.2, deadline=0.8)
    started = time.monotonic()
    result = await headend.credit(102, transaction_id="T-slow", amount=Decimal("100"))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAILED and elapsed < 0.8 + SLACK, (result, elapsed)
    assert (await mock.state())["counts"]["requests"] >= 3  # it did retry before the deadline
    # The abandoned attempts still reach the head-end after their latency: the first applies,
    # the rest repeat its answer. Sending again under the same id then credits nothing more.
    await asyncio.sleep(0.8)
    await mock.faults(latency_ms=0)
    again = await make_headend(mock.url).credit(102, transaction_id="T-slow", amount=Decimal("100"))
    assert again.outcome is Outcome.APPLIED
    assert (await mock.state())["meters"]["102"]["credited"] == "100.00"


async def test_a_failing_head_end_is_retried_until_the_deadline(mock: MockHeadEnd, make_headend: MakeHeadEnd) -> None:
    await mock.faults(failure_rate=1.0)
    started = time.monotonic()
    result = await make_headend(mock.url, deadline=0.5).relay(101, command_id="c-2", on=False)
    assert result.outcome is Outcome.FAILED and ("HTTP 50" in result.reason or "deadline" in result.reason)
    assert time.monotonic() - started < 0.5 + SLACK
    state = await mock.state()
    assert state["counts"]["requests"] >= 3 and state["commands"] == 0


async def test_an_unreachable_meter_is_answered_at_once_without_retries(
    mock: MockHeadEnd, make_headend: MakeHeadEnd
) -> None:
    await mock.faults(unreachable=["101"])
    headend = make_headend(mock.url)
    assert (await headend.relay(101, command_id="c-3", on=False)).outcome is Outcome.UNREACHABLE
    assert (await headend.meter_status(101)).outcome is Outcome.UNREACHABLE
    assert (await headend.credit(101, transaction_id="T3", amount=Decimal(5))).outcome is Outcome.UNREACHABLE
    assert (await mock.state())["counts"] == {"requests": 3, "unreachable": 3}


async def test_refusals_queued_credits_and_unknown_transactions(
    mock: MockHeadEnd, make_headend: MakeHeadEnd, mock_clock: StepClock
) -> None:
    await mock.faults(refuse_credits=["101"], refuse_commands=["101"], queue_credits_seconds=60)
    headend = make_headend(mock.url)
    refused = await headend.credit(101, transaction_id="T4", amount=Decimal(5))
    assert refused.outcome is Outcome.REFUSED and refused.reason == "meter refuses credits"
    relay = await headend.relay(101, command_id="c-4", on=False)
    assert relay.outcome is Outcome.REFUSED and relay.relay_on is True
    queued = await headend.credit(102, transaction_id="T5", amount=Decimal("9.99"))
    assert queued.outcome is Outcome.QUEUED and queued.token is None
    mock_clock.at += dt.timedelta(seconds=61)
    settled = await headend.credit_status("T5")
    assert settled.outcome is Outcome.APPLIED and settled.token is not None
    assert (await headend.credit_status("never-sent")).outcome is Outcome.UNKNOWN
    status = await headend.meter_status(102)
    assert status.outcome is Outcome.APPLIED and status.relay_on is True and status.load_dg == Decimal("2.00")


async def test_a_wrong_token_fails_without_retries(mock: MockHeadEnd, make_headend: MakeHeadEnd) -> None:
    result = await make_headend(mock.url, token="wrong").relay(101, command_id="c-5", on=False)
    assert result.outcome is Outcome.FAILED and result.reason.startswith("HTTP 401")
    assert (await mock.state())["counts"] == {}  # refused by auth before the fault counter


async def test_429_is_retried_other_4xx_and_bad_replies_are_not(aiohttp_server: Any, make_headend: MakeHeadEnd) -> None:
    seen: list[str] = []

    async def relay(request: web.Request) -> web.Response:
        seen.append(request.match_info["meter_no"])
        meter_no = request.match_info["meter_no"]
        if meter_no == "1" and len(seen) < 3:
            return web.json_response({"error": "slow down"}, status=429)
        if meter_no == "2":
            return web.json_response({"error": "command_id reused with other parameters"}, status=409)
        if meter_no == "3":
            return web.json_response({"command_id": "x"})  # not a RelayReply
        body = await request.json()
        reply = {"command_id": body["command_id"], "meter_no": meter_no, "result": "applied"}
        return web.json_response({**reply, "relay": body["state"], "changed": True, "reason": None})

    app = web.Application()
    app.router.add_post("/headend/v1/meters/{meter_no}/relay", relay)
    headend = make_headend(str((await aiohttp_server(app)).make_url("")))
    assert (await headend.relay(1, command_id="a", on=True)).outcome is Outcome.APPLIED
    assert seen == ["1", "1", "1"]
    conflict = await headend.relay(2, command_id="b", on=True)
    assert conflict.outcome is Outcome.FAILED and conflict.reason == "HTTP 409: command_id reused with other parameters"
    bad = await headend.relay(3, command_id="c", on=True)
    assert bad.outcome is Outcome.FAILED and bad.reason.startswith("reply does not match the protocol")
    assert seen == ["1", "1", "1", "2", "3"]


async def test_a_closed_port_fails_within_the_deadline(make_headend: MakeHeadEnd, unused_tcp_port: int) -> None:
    started = time.monotonic()
    result = await make_headend(f"http://127.0.0.1:{unused_tcp_port}", deadline=0.5).meter_status(1)
    # Which fires first under load, the retry stop or the deadline's timeout, is a race; both fail.
    assert result.outcome is Outcome.FAILED
    assert "gave up retrying" in result.reason or "0.5 s deadline" in result.reason, result.reason
    assert time.monotonic() - started < 0.5 + SLACK
