"""The DG sensing callback (call 11) on the wire: its JSON body and its Standard Webhooks signature.
A site's prepaid policy events (`site_event_body`) go to its webhook signed the same way.

The gateway POSTs `{"site_id", "dg_no", "status", "date_time", "event_id"}` with three headers:
`webhook-id` (the event id; the same on every retry), `webhook-timestamp` (Unix seconds of this
attempt) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with
the secret's bytes after `whsec_`). The HMAC is the `standardwebhooks` package's; `verify` is
what a receiver needs, written as a pure function of the time so it can be tested and reused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
from collections.abc import Mapping

import orjson
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
TOLERANCE = dt.timedelta(minutes=5)  # the Standard Webhooks default for replayed or delayed messages


class SignatureError(ValueError):
    """The callback is not signed with this secret, or its timestamp is too far from now."""


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def callback_body(*, site_id: str, dg_no: str, status: str, date_time: str, event_id: str) -> bytes:
    """The callback's JSON body, keys in the documented order, compact."""
    return orjson.dumps(
        {"site_id": site_id, "dg_no": dg_no, "status": status, "date_time": date_time, "event_id": event_id}
    )


def site_event_body(
    *, event_id: str, type: str, site_id: str, meter_no: int | None, at: str, data: Mapping[str, object]
) -> bytes:
    """A site event's JSON body (prepaid policy events, signed like DG callbacks)."""
    meter = None if meter_no is None else str(meter_no)
    return orjson.dumps(
        {"event_id": event_id, "type": type, "site_id": site_id, "meter_no": meter, "at": at, "data": dict(data)}
    )


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for this id, Unix timestamp and body."""
    return Webhook(secret).sign(msg_id, dt.datetime.fromtimestamp(timestamp, dt.UTC), body.decode())


def signed_headers(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: dt.datetime, tolerance: dt.timedelta = TOLERANCE
) -> dict[str, str]:
    """Check a received callback; its parsed body if genuine, SignatureError otherwise.

    `headers` may be any case-insensitive or plain mapping (names are matched in lower case).
    `now` is the receiver's clock; a timestamp more than `tolerance` away is refused (replay).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    offered = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and offered):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {stamp!r} is not Unix seconds") from None
    if abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id=msg_id, timestamp=timestamp, body=body).encode()
    # The header may carry several space-separated signatures (e.g. during a secret rotation).
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in offered.split()):
        raise SignatureError("no matching v1 signature")
    return orjson.loads(body)
