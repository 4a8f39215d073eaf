"""The HTTP head-end client: `schemas.headend` over one aiohttp `ClientSession`.

Retries (tenacity): exponential backoff with jitter, only for what is safe to repeat, within
one total deadline per call. Safe means: the connection failed or dropped, an attempt timed out,
or the head-end answered 429 or a 5xx other than 504. Every request carries its command or
transaction id, and the head-end answers a repeated id with its first answer, so a retry after a
reply was lost never acts twice. Not retried: 504 (the head-end already tried the meter and
says it is unreachable; nothing was done), other 4xx (the request is wrong and stays wrong),
and replies that do not match the protocol.

The session (and its per-attempt `ClientTimeout`) belongs to the app: `open_session` makes it,
the app's cleanup context closes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec

import aiohttp
from marshmallow import Schema, ValidationError
from prometheus_client import Histogram
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_before_delay, wait_exponential_jitter

from adapters.headend import Outcome, Result
from schemas.headend import (
    CREDIT_STATUS_PATH,
    CREDITS_PATH,
    LOAD_PATH,
    RELAY_PATH,
    STATUS_PATH,
    CreditReply,
    CreditRequest,
    LoadReply,
    LoadRequest,
    MeterStatusReply,
    RelayReply,
    RelayRequest,
)

log = logging.getLogger("gateway.headend")

CREDIT_OUTCOMES = {"applied": Outcome.APPLIED, "queued": Outcome.QUEUED, "refused": Outcome.REFUSED}


CALLS = Histogram(
    "gateway_headend_call_seconds",
    "HTTP head-end calls (retries included) by operation and outcome: latency; _count counts them",
    ["operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
)
P = ParamSpec("P")
Operation = Callable[Concatenate["HttpHeadEnd", P], Awaitable[Result]]


def _measured(operation: str) -> Callable[[Operation[P]], Operation[P]]:
    """Time each call of a head-end operation and count it by the outcome it came to."""

    def decorate(call: Operation[P]) -> Operation[P]:
        @functools.wraps(call)
        async def measured(self: HttpHeadEnd, *args: P.args, **kwargs: P.kwargs) -> Result:
            started = time.perf_counter()
            result = await call(self, *args, **kwargs)
            CALLS.labels(operation, result.outcome.value).observe(time.perf_counter() - started)
            return result

        return measured

    return decorate


class Retryable(Exception):
    """An attempt that may be repeated safely (no answer, or a transient head-end failure)."""


class _Answer:
    """A final HTTP answer: status and JSON body (`{}` if the body was not JSON)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


def open_session(*, token: str | None, attempt_seconds: float) -> aiohttp.ClientSession:
    """The client session for the app's life: bearer token and explicit timeouts per attempt."""
    timeout = aiohttp.ClientTimeout(total=attempt_seconds, connect=min(attempt_seconds, 3.0), sock_read=attempt_seconds)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(timeout=timeout, headers=headers, raise_for_status=False)


class HttpHeadEnd:
    """A `HeadEnd` over HTTP. `deadline` bounds each call, retries included."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        deadline: float = 15.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 2.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self.deadline = deadline
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

    @_measured("relay")
    async def relay(self, meter_no: int, *, command_id: str, on: bool) -> Result:
        """`POST .../relay`."""
        body = RelayRequest().dump({"command_id": command_id, "state": "on" if on else "off"})
        reply = await self._call("POST", RELAY_PATH.format(meter_no=meter_no), body, RelayReply())
        if isinstance(reply, Result):
            return reply
        return Result(
            Outcome(reply["result"]),
            reason=reply["reason"] or "",
            relay_on=reply["relay"] == "on",
            changed=reply["changed"],
            answer=RelayReply().dump(reply),
        )

    @_measured("load")
    async def set_load(self, meter_no: int, *, command_id: str, load_dg: Decimal, load_grid: Decimal) -> Result:
        """`POST .../load`."""
        body = LoadRequest().dump({"command_id": command_id, "load_dg": load_dg, "load_grid": load_grid})
        reply = await self._call("POST", LOAD_PATH.format(meter_no=meter_no), body, LoadReply())
        if isinstance(reply, Result):
            return reply
        return Result(
            Outcome(reply["result"]),
            reason=reply["reason"] or "",
            load_dg=reply["load_dg"],
            load_grid=reply["load_grid"],
            answer=LoadReply().dump(reply),
        )

    @_measured("credit")
    async def credit(self, meter_no: int, *, transaction_id: str, amount: Decimal) -> Result:
        """`POST .../credits`."""
        body = CreditRequest().dump({"transaction_id": transaction_id, "amount": amount})
        return self._credit(await self._call("POST", CREDITS_PATH.format(meter_no=meter_no), body, CreditReply()))

    @_measured("credit_status")
    async def credit_status(self, transaction_id: str) -> Result:
        """`GET /credits/{transaction_id}`; `unknown` on 404."""
        path = CREDIT_STATUS_PATH.format(transaction_id=transaction_id)
        return self._credit(await self._call("GET", path, None, CreditReply(), not_found=Outcome.UNKNOWN))

    @_measured("meter_status")
    async def meter_status(self, meter_no: int) -> Result:
        """`GET .../status`."""
        reply = await self._call("GET", STATUS_PATH.format(meter_no=meter_no), None, MeterStatusReply())
        if isinstance(reply, Result):
            return reply
        if not reply["reachable"]:
            return Result(Outcome.UNREACHABLE, reason="meter unreachable", answer=MeterStatusReply().dump(reply))
        return Result(
            Outcome.APPLIED,
            relay_on=reply["relay"] == "on",
            load_dg=reply["load_dg"],
            load_grid=reply["load_grid"],
            answer=MeterStatusReply().dump(reply),
        )

    @staticmethod
    def _credit(reply: dict[str, Any] | Result) -> Result:
        if isinstance(reply, Result):
            return reply
        return Result(
            CREDIT_OUTCOMES[reply["state"]],
            reason=reply["reason"] or "",
            token=reply["token"],
            applied_at=reply["applied_at"],
            answer=CreditReply().dump(reply),
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        schema: Schema,
        *,
        not_found: Outcome = Outcome.FAILED,
    ) -> dict[str, Any] | Result:
        """The reply loaded with `schema`, or a `Result` saying why there is none."""
        try:
            answer = await self._exchange(method, path, body)
        except TimeoutError:
            return Result(Outcome.FAILED, reason=f"no answer within the {self.deadline:g} s deadline")
        except Retryable as exc:
            return Result(Outcome.FAILED, reason=f"gave up retrying: {exc}")
        if answer.status == 200:
            try:
                return schema.load(answer.body)
            except ValidationError as exc:
                return Result(Outcome.FAILED, reason=f"reply does not match the protocol: {exc.messages}")
        reason = str(answer.body.get("error") or f"HTTP {answer.status}")
        if answer.status == 504:
            return Result(Outcome.UNREACHABLE, reason=reason, answer=answer.body)
        if answer.status == 404:
            return Result(not_found, reason=reason, answer=answer.body)
        return Result(Outcome.FAILED, reason=f"HTTP {answer.status}: {reason}", answer=answer.body)

    async def _exchange(self, method: str, path: str, body: dict[str, Any] | None) -> _Answer:
        """Attempts until a final answer, with backoff; the whole within the deadline."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Retryable),
            wait=wait_exponential_jitter(
                multiplier=self._backoff_initial, max=self._backoff_max, jitter=self._backoff_initial
            ),
            stop=stop_before_delay(self.deadline),
            before_sleep=_log_retry,
            reraise=True,
        )
        # stop_before_delay stops between attempts; the timeout also bounds the attempt in flight.
        async with asyncio.timeout(self.deadline):
            return await retrying(self._attempt, method, self._base + path, body)

    async def _attempt(self, method: str, url: str, body: dict[str, Any] | None) -> _Answer:
        try:
            async with self._session.request(method, url, json=body) as response:
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
                status = response.status
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if status == 429 or (status >= 500 and status != 504):
            raise Retryable(f"HTTP {status}")
        return _Answer(status, payload if isinstance(payload, dict) else {})


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    log.warning(
        "head-end attempt %d failed (%s); retrying in %.2f s",
        state.attempt_number,
        outcome.exception() if outcome is not None else "?",
        state.next_action.sleep if state.next_action else 0.0,
    )
