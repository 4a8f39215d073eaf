"""The Factech envelope mapping on its own: every call's error shape as the document spells it,
the value formats, and how `/api/v1` routes read their inputs (query, JSON or form).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from adapters import factech
from gateway.api import request_inputs
from gateway.errors import error_middleware
from schemas import factech_envelopes

# The document's error envelope of each call: (status word, message, has count, has data, remarks key).
DOCUMENTED_ERRORS = {
    1: ("error", "Not Found", True, True, "remarks"),
    2: ("Error", "Not Found", True, True, "remarks"),
    3: ("Error", "Not Recharged", True, True, "remarks"),
    4: ("error", "No such record found", False, True, "remarks"),
    5: ("Error", "Not Details", True, True, "remarks"),
    6: ("Error", "Operation Not Successful", False, False, "Remarks"),
    7: ("Error", "Operation Not Successful", False, False, "Remarks"),
    8: ("error", "Not able to connect to Meter", False, True, "remarks"),
    9: ("Error", "Operation Not Successful", False, False, "Remarks"),
    10: ("Error", "Not Found", False, True, "remarks"),
    11: ("Error", "Not Configured", False, True, "remarks"),
    12: ("Error", "Not Found", False, True, "remarks"),
    13: ("Error", "Not Found", False, True, "remarks"),
}


@pytest.mark.parametrize("number", sorted(DOCUMENTED_ERRORS))
def test_each_calls_document_error_shape(number: int) -> None:
    word, message, has_count, has_data, remarks_key = DOCUMENTED_ERRORS[number]
    call = factech_envelopes.CALLS[number]
    # The document's own error case: not found for most calls, a failed operation for 3, 6-9, 11.
    kind = "conflict" if number in (3, 6, 7, 8, 9, 11) else "not_found"
    reply = factech_envelopes.error_reply(call, kind=kind, status=409, reason="Meter was already STARTED")
    expected: dict = {"status": word, "message": message}
    if has_count:
        expected["count"] = "0"
    if has_data:
        expected["data"] = None
        if kind != "not_found":
            expected["remarks"] = "Meter was already STARTED"
    else:
        expected[remarks_key] = "Meter was already STARTED"
    assert reply.body == expected and reply.status == 409


def test_invalid_input_names_every_parameter_in_remarks() -> None:
    errors = {"meter_no": ["Not a valid meter number."], "site_id": ["Missing data for required field."]}
    reply = factech_envelopes.error_reply(factech_envelopes.START_METER, kind="invalid", status=400, errors=errors)
    assert reply.body == {
        "status": "Error",
        "message": "Invalid input",
        "Remarks": "meter_no: Not a valid meter number.; site_id: Missing data for required field.",
    }


def test_success_envelopes_count_lists_as_strings_and_waiting_is_202() -> None:
    assert factech_envelopes.success(factech_envelopes.SITE_READINGS, []).body == {
        "status": "success",
        "message": "Meter Readings and Balances",
        "count": "0",
        "data": [],
    }
    assert factech_envelopes.success(factech_envelopes.DG_STATUS, {"dg_no": "1"}).body == {
        "status": "success",
        "message": "DG Status",
        "data": {"dg_no": "1"},
    }
    waiting = factech_envelopes.waiting(factech_envelopes.RECHARGE_STATUS, {"transaction_id": "t1"})
    assert waiting.status == 202 and waiting.body["message"] == "Recharge request is pending"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0"), "0.00"),
        (Decimal("12.345"), "12.35"),  # half up, not to even
        (Decimal("12.344"), "12.34"),
        (Decimal("-0.004"), "0.00"),  # never "-0.00"
        (Decimal("-3.2"), "-3.20"),
        (Decimal("1E+3"), "1000.00"),
        (None, ""),
    ],
)
def test_two_decimals(value: Decimal | None, text: str) -> None:
    assert factech.two_decimals(value) == text


def test_local_time_is_the_documents_format_in_the_site_zone() -> None:
    zone = zoneinfo.ZoneInfo("Asia/Kolkata")
    assert factech.local_time(dt.datetime(2025, 2, 7, 18, 30, 5, tzinfo=dt.UTC), zone) == "2025-02-08 00:00:05"
    assert factech.local_time(None, zone) == ""


@pytest.fixture
async def echo(aiohttp_client) -> TestClient:  # type: ignore[no-untyped-def]
    """A bare app whose only route answers the inputs it read."""

    async def handler(request: web.Request) -> web.Response:
        # Decimals shown as text: JSON numbers arrive as exact Decimals.
        return web.json_response(await request_inputs(request), dumps=lambda o: json.dumps(o, default=str))

    app = web.Application(middlewares=[error_middleware])
    app.router.add_route("*", "/echo", handler)
    return await aiohttp_client(app)


async def test_get_reads_the_query_string_only(echo: TestClient) -> None:
    response = await echo.get("/echo?site_id=S1&meter_no=5")
    assert await response.json() == {"site_id": "S1", "meter_no": "5"}


async def test_post_reads_json_form_or_query(echo: TestClient) -> None:
    as_json = await echo.post("/echo?site_id=Q", json={"site_id": "S1", "amount": 10.10})
    assert await as_json.json() == {"site_id": "S1", "amount": "10.1"}
    as_form = await echo.post("/echo?meter_no=5", data={"site_id": "S1", "amount": "10.10"})
    assert await as_form.json() == {"meter_no": "5", "site_id": "S1", "amount": "10.10"}
    as_query = await echo.post("/echo?site_id=S1")
    assert await as_query.json() == {"site_id": "S1"}


@pytest.mark.parametrize(("body", "why"), [("{not json", "Malformed JSON."), ("[1, 2]", "Expected a JSON object.")])
async def test_post_with_a_bad_json_body_is_invalid_input(echo: TestClient, body: str, why: str) -> None:
    response = await echo.post("/echo", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert await response.json() == {
        "status": "error",
        "message": "Invalid input: body",
        "errors": {"body": [why]},
    }
