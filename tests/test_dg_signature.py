"""The callback signature on its own (the README's test vectors), the retry schedule, and the
URL check's address rules that the HTTP tests cannot reach (the schema refuses those URLs first).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from standardwebhooks import Webhook

from adapters.webhooks import UnsafeTarget, check_target
from scheduler.deliveries import backoff
from schemas.dg_callback import SignatureError, callback_body, new_secret, sign, signed_headers, verify
from storage.errors import InvalidInput

# The README publishes these; a receiver's implementation should reproduce them.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_VECTOR = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="  # the Standard Webhooks spec's own
DG_EVENT_ID = "evt_0123456789abcdef0123456789abcdef"
DG_TIMESTAMP = 1795169405  # 2026-11-20T10:10:05Z
DG_BODY = (
    b'{"site_id":"S1","dg_no":"DG1","status":"ON","date_time":"2026-11-20 15:40:00",'
    b'"event_id":"evt_0123456789abcdef0123456789abcdef"}'
)
DG_SIGNATURE = "v1,3FbDwjGoTPE922CZIOS3dQI5Rsac8cRTJarvaHtFb74="


def test_the_standard_webhooks_spec_vector() -> None:
    msg_id, timestamp, body = SPEC_VECTOR
    assert sign(SPEC_SECRET, msg_id=msg_id, timestamp=timestamp, body=body) == SPEC_SIGNATURE


def test_the_dg_callback_vector() -> None:
    body = callback_body(site_id="S1", dg_no="DG1", status="ON", date_time="2026-11-20 15:40:00", event_id=DG_EVENT_ID)
    assert body == DG_BODY
    headers = signed_headers(SPEC_SECRET, msg_id=DG_EVENT_ID, timestamp=DG_TIMESTAMP, body=body)
    assert headers == {
        "webhook-id": DG_EVENT_ID,
        "webhook-timestamp": str(DG_TIMESTAMP),
        "webhook-signature": DG_SIGNATURE,
    }
    a_minute_later = dt.datetime.fromtimestamp(DG_TIMESTAMP + 60, dt.UTC)
    assert verify(SPEC_SECRET, headers, body, now=a_minute_later)["status"] == "ON"


def test_a_receiver_using_the_standardwebhooks_package_accepts_our_callbacks() -> None:
    secret, now = new_secret(), int(time.time())
    assert secret.startswith("whsec_")
    headers = signed_headers(secret, msg_id=DG_EVENT_ID, timestamp=now, body=DG_BODY)
    assert Webhook(secret).verify(DG_BODY, headers)["event_id"] == DG_EVENT_ID


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"body": DG_BODY.replace(b'"ON"', b'"OFF"')}, "no matching"),
        ({"secret": new_secret()}, "no matching"),
        ({"webhook-id": "evt_other"}, "no matching"),
        ({"webhook-timestamp": str(DG_TIMESTAMP + 1)}, "no matching"),
        ({"webhook-signature": "v1,AAAA"}, "no matching"),
        ({"webhook-signature": ""}, "missing"),
        ({"webhook-timestamp": "soon"}, "Unix seconds"),
        ({"now": dt.datetime.fromtimestamp(DG_TIMESTAMP + 301, dt.UTC)}, "tolerance"),
        ({"now": dt.datetime.fromtimestamp(DG_TIMESTAMP - 301, dt.UTC)}, "tolerance"),
    ],
)
def test_verify_refuses_anything_but_the_signed_message(change: dict, why: str) -> None:
    headers = {"webhook-id": DG_EVENT_ID, "webhook-timestamp": str(DG_TIMESTAMP), "webhook-signature": DG_SIGNATURE}
    headers.update({k: v for k, v in change.items() if k.startswith("webhook-")})
    with pytest.raises(SignatureError, match=why):
        verify(
            change.get("secret", SPEC_SECRET),
            headers,
            change.get("body", DG_BODY),
            now=change.get("now", dt.datetime.fromtimestamp(DG_TIMESTAMP, dt.UTC)),
        )


def test_verify_takes_any_header_case_and_one_of_several_signatures() -> None:
    headers = {
        "Webhook-Id": DG_EVENT_ID,
        "Webhook-Timestamp": str(DG_TIMESTAMP),
        "Webhook-Signature": f"v1,AAAA {DG_SIGNATURE}",
    }
    assert verify(SPEC_SECRET, headers, DG_BODY, now=dt.datetime.fromtimestamp(DG_TIMESTAMP, dt.UTC))["dg_no"] == "DG1"


def test_retries_back_off_exponentially_up_to_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 12)] == [
        5,
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        2560,
        3600,
    ]
    assert backoff(40) == dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://224.0.0.1/",
        "http://[fe80::1]/",
        "http://[::]/",
    ],
)
async def test_mapped_multicast_and_unspecified_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget, match="not a public address"):
        await check_target(url, allow_private=False)
    await check_target(url, allow_private=True)


async def test_public_literals_pass_and_other_schemes_are_invalid() -> None:
    await check_target("https://93.184.215.14/dg", allow_private=False)
    await check_target("http://[2606:4700::1111]:8443/dg", allow_private=False)
    with pytest.raises(InvalidInput):
        await check_target("ftp://93.184.215.14/dg", allow_private=True)
