"""The head-end: each meter's relay and loads, credits turned into 20-digit tokens.

Every command and credit is remembered by its id, so a retried request gets the first answer
and nothing happens twice. The state lives in memory: the mock starts empty and
`POST /control/reset` empties it again. Handlers here are thin: parse (400 naming the field),
act on `HeadEnd` (synchronous, so two concurrent duplicates cannot both act), dump the reply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError

from mock_meter_server.faults import FaultInjector
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
    MeterPath,
    MeterStatusReply,
    RelayReply,
    RelayRequest,
    TransactionPath,
)

Now = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Real time, timezone-aware UTC (the default clock; tests inject their own)."""
    return dt.datetime.now(dt.UTC)


class HeadEndError(Exception):
    """An error answer: `status` and the JSON body's `error` plus any extra fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclasses.dataclass
class Meter:
    """One meter as the head-end knows it. New meters are connected (relay on)."""

    meter_no: str
    relay: str = "on"
    load_dg: Decimal = Decimal("2.00")
    load_grid: Decimal = Decimal("5.00")
    credited: Decimal = Decimal("0.00")


@dataclasses.dataclass
class Credit:
    """One credit request and what became of it."""

    transaction_id: str
    meter_no: str
    amount: Decimal
    state: str
    reason: str | None
    requested_at: dt.datetime
    due_at: dt.datetime | None = None  # when a queued credit applies
    token: str | None = None
    applied_at: dt.datetime | None = None


class HeadEnd:
    """The head-end's state and rules. Not thread-safe; every method is synchronous on purpose."""

    def __init__(
        self, injector: FaultInjector, *, clock: Now = utc_now, seed: int = 0, state_file: Path | None = None
    ) -> None:
        self.injector = injector
        self.clock = clock
        self.seed = seed
        self.meters: dict[str, Meter] = {}
        self.commands: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.credits: dict[str, Credit] = {}
        # Relay states survive a restart here (a real head-end does not forget a stopped meter).
        self.state_file = state_file
        if state_file is not None and state_file.exists():
            for meter_no, relay in json.loads(state_file.read_text()).get("relays", {}).items():
                self.meter(meter_no).relay = relay

    def _save_relays(self) -> None:
        """Write every relay state to the state file (whole file replaced, so never half written)."""
        if self.state_file is None:
            return
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"relays": {no: m.relay for no, m in sorted(self.meters.items())}}))
        temporary.replace(self.state_file)

    def reset(self) -> None:
        """Forget every meter, command and credit."""
        self.meters.clear()
        self.commands.clear()
        self.credits.clear()
        self._save_relays()

    def meter(self, meter_no: str) -> Meter:
        """The meter, created on first mention."""
        if meter_no not in self.meters:
            self.meters[meter_no] = Meter(meter_no)
        return self.meters[meter_no]

    def _check_reachable(self, meter_no: str) -> None:
        if self.injector.is_unreachable(meter_no):
            self.injector.counts["unreachable"] += 1
            raise HeadEndError(504, "meter unreachable", meter_no=meter_no)

    def _replay(self, command_id: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first answer to this command id, or None if it is new; 409 if reused differently."""
        if command_id not in self.commands:
            return None
        first_params, reply = self.commands[command_id]
        if first_params != params:
            raise HeadEndError(409, "command_id reused with other parameters", command_id=command_id)
        return reply

    def relay(self, meter_no: str, *, command_id: str, state: str) -> dict[str, Any]:
        """Switch the relay (or refuse); answers a `RelayReply`."""
        params = {"call": "relay", "meter_no": meter_no, "state": state}
        if (reply := self._replay(command_id, params)) is not None:
            return reply
        self._check_reachable(meter_no)
        meter = self.meter(meter_no)
        reply = {"command_id": command_id, "meter_no": meter_no, "reason": None}
        if meter_no in self.injector.faults.refuse_commands:
            reply |= {"result": "refused", "relay": meter.relay, "changed": False}
            reply["reason"] = "meter rejected the command"
        else:
            reply |= {"result": "applied", "relay": state, "changed": meter.relay != state}
            meter.relay = state
            if reply["changed"]:
                self._save_relays()
        self.commands[command_id] = (params, reply)
        return reply

    def set_load(self, meter_no: str, *, command_id: str, load_dg: Decimal, load_grid: Decimal) -> dict[str, Any]:
        """Set the sanctioned loads (or refuse); answers a `LoadReply`."""
        params = {"call": "load", "meter_no": meter_no, "load_dg": load_dg, "load_grid": load_grid}
        if (reply := self._replay(command_id, params)) is not None:
            return reply
        self._check_reachable(meter_no)
        meter = self.meter(meter_no)
        reply = {"command_id": command_id, "meter_no": meter_no, "result": "applied", "reason": None}
        if meter_no in self.injector.faults.refuse_commands:
            reply |= {"result": "refused", "reason": "meter rejected the command"}
        else:
            meter.load_dg, meter.load_grid = load_dg, load_grid
        reply |= {"load_dg": meter.load_dg, "load_grid": meter.load_grid}
        self.commands[command_id] = (params, reply)
        return reply

    def credit(self, meter_no: str, *, transaction_id: str, amount: Decimal) -> Credit:
        """Apply, queue or refuse a credit; a repeat answers the credit as it stands now."""
        known = self.credits.get(transaction_id)
        if known is not None:
            if (known.meter_no, known.amount) != (meter_no, amount):
                raise HeadEndError(409, "transaction_id reused with other parameters", transaction_id=transaction_id)
            return self._settle(known)
        self._check_reachable(meter_no)
        meter = self.meter(meter_no)
        faults = self.injector.faults
        now = self.clock()
        credit = Credit(transaction_id, meter_no, amount, "refused", None, requested_at=now)
        if amount <= 0:
            credit.reason = "amount must be greater than zero"
        elif amount > faults.max_credit:
            credit.reason = f"amount exceeds the maximum of {faults.max_credit}"
        elif meter_no in faults.refuse_credits:
            credit.reason = "meter refuses credits"
        elif faults.queue_credits_seconds > 0:
            credit.state = "queued"
            credit.due_at = now + dt.timedelta(seconds=faults.queue_credits_seconds)
        else:
            self._apply(credit, meter, now)
        self.credits[transaction_id] = credit
        return credit

    def credit_status(self, transaction_id: str) -> Credit:
        """The credit by id (a queued one applies here once its time has come); 404 if unknown."""
        credit = self.credits.get(transaction_id)
        if credit is None:
            raise HeadEndError(404, "unknown transaction", transaction_id=transaction_id)
        return self._settle(credit)

    def _settle(self, credit: Credit) -> Credit:
        """Apply a queued credit whose time has come. Checked lazily, on every look at it."""
        if credit.state == "queued" and credit.due_at is not None and self.clock() >= credit.due_at:
            self._apply(credit, self.meter(credit.meter_no), credit.due_at)
        return credit

    def _apply(self, credit: Credit, meter: Meter, at: dt.datetime) -> None:
        credit.state, credit.applied_at, credit.token = "applied", at, self._token(credit)
        meter.credited += credit.amount

    def _token(self, credit: Credit) -> str:
        """A 20-digit token, the same for the same seed and transaction (reproducible runs)."""
        digest = hashlib.sha256(f"{self.seed}:{credit.transaction_id}:{credit.meter_no}".encode()).digest()
        return str(int.from_bytes(digest[:10], "big") % 10**20).zfill(20)

    def status(self, meter_no: str) -> dict[str, Any]:
        """The meter's live state; answers a `MeterStatusReply`."""
        self._check_reachable(meter_no)
        meter = self.meter(meter_no)
        return {
            "meter_no": meter_no,
            "relay": meter.relay,
            "load_dg": meter.load_dg,
            "load_grid": meter.load_grid,
            "reachable": True,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything, for `GET /control/state` (queued credits settle first)."""
        for credit in self.credits.values():
            self._settle(credit)
        return {
            "meters": {
                no: {
                    "relay": m.relay,
                    "load_dg": str(m.load_dg),
                    "load_grid": str(m.load_grid),
                    "credited": str(m.credited),
                }
                for no, m in sorted(self.meters.items())
            },
            "credits": {tid: CREDIT_REPLY.dump(c) for tid, c in self.credits.items()},
            "commands": len(self.commands),
            "counts": dict(self.injector.counts),
        }


HEADEND = web.AppKey("headend", HeadEnd)

CREDIT_REPLY = CreditReply()
routes = web.RouteTableDef()


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate with a schema; a ValidationError reaches the app's error middleware (400)."""
    return schema.load(data)


async def load_body(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The JSON body validated by `schema` (400 naming the field, or saying it is not JSON)."""
    try:
        data = await request.json()
    except ValueError as exc:
        raise HeadEndError(400, "body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["The body must be a JSON object."]})
    return load(schema, data)


@routes.post(RELAY_PATH)
async def relay(request: web.Request) -> web.Response:
    """Switch a meter's relay on or off."""
    meter_no = load(MeterPath(), dict(request.match_info))["meter_no"]
    body = await load_body(request, RelayRequest())
    return web.json_response(RelayReply().dump(request.app[HEADEND].relay(meter_no, **body)))


@routes.post(LOAD_PATH)
async def set_load(request: web.Request) -> web.Response:
    """Set a meter's DG and grid loads."""
    meter_no = load(MeterPath(), dict(request.match_info))["meter_no"]
    body = await load_body(request, LoadRequest())
    return web.json_response(LoadReply().dump(request.app[HEADEND].set_load(meter_no, **body)))


@routes.post(CREDITS_PATH)
async def credit(request: web.Request) -> web.Response:
    """Credit a meter: applied with a token, queued, or refused."""
    meter_no = load(MeterPath(), dict(request.match_info))["meter_no"]
    body = await load_body(request, CreditRequest())
    return web.json_response(CREDIT_REPLY.dump(request.app[HEADEND].credit(meter_no, **body)))


@routes.get(CREDIT_STATUS_PATH)
async def credit_status(request: web.Request) -> web.Response:
    """A credit's state by transaction id."""
    transaction_id = load(TransactionPath(), dict(request.match_info))["transaction_id"]
    return web.json_response(CREDIT_REPLY.dump(request.app[HEADEND].credit_status(transaction_id)))


@routes.get(STATUS_PATH)
async def meter_status(request: web.Request) -> web.Response:
    """A meter's live relay state and loads."""
    meter_no = load(MeterPath(), dict(request.match_info))["meter_no"]
    return web.json_response(MeterStatusReply().dump(request.app[HEADEND].status(meter_no)))
