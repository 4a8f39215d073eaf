"""Outbound DG callbacks: which URLs they may go to, and the one HTTP client that sends them.

A callback URL is a request the gateway makes on someone else's say-so, so it must not reach
inside the network it runs in (SSRF): loopback, private, link-local (cloud metadata at
169.254.169.254 among them), shared, reserved and multicast addresses, and IPv6 addresses
that lead to such IPv4 ones (NAT64, 6to4, Teredo, IPv4-compatible and -mapped), are refused
unless `GATEWAY_CALLBACK_ALLOW_PRIVATE=1`. Names are judged by every address they resolve to, at
registration and again by the sender's own resolver at each connection, so a name that later
rebinds to 127.0.0.1 is refused on delivery as well.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import time
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from prometheus_client import Counter
from yarl import URL

from adapters.factech import local_time
from schemas.dg_callback import callback_body, signed_headers, site_event_body
from storage.dg.dg_events import DueEvent
from storage.errors import DomainError, InvalidInput, Refused
from storage.money.site_events import DueSiteEvent

# Explicit bounds on every attempt: a slow receiver costs at most this, and never ingest's time.
TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5, sock_read=10)
USER_AGENT = "meter-gateway-callbacks/1"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(Refused):
    """The callback URL points (or resolves) somewhere the gateway must not call."""


NOT_PUBLIC = "not a public address"
# NAT64's well-known prefix (RFC 6052) carries an IPv4 address in its last 32 bits; the
# local-use prefix (RFC 8215) is some operator's own translator: refused outright.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d (RFC 4291 2.5.5.1)


def _public(address: IPAddress) -> bool:
    # is_global is False for loopback, private, link-local, shared (100.64/10), reserved and
    # documentation ranges; multicast is "global" to it but is no place for a callback.
    return address.is_global and not address.is_multicast


def _refusal(address: IPAddress) -> str | None:
    """NOT_PUBLIC if this address may not be called, None for a globally routable one.

    IPv6 addresses that carry an IPv4 address are judged by it: IPv4-mapped (::ffff:a.b.c.d)
    and NAT64 (64:ff9b::a9fe:a9fe is 169.254.169.254 through a translator; a DNS64 resolver hands
    such addresses out for every IPv4-only receiver). The transition forms 6to4 (2002::/16),
    Teredo (2001::/32), IPv4-compatible (::a.b.c.d) and local-use NAT64 (64:ff9b:1::/48) are
    refused outright: no receiver needs them, and each can lead to an internal IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if (
            address.sixtofour is not None
            or address.teredo is not None
            or address in IPV4_COMPATIBLE
            or address in LOCAL_NAT64
        ):
            return NOT_PUBLIC
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None if _public(address) else NOT_PUBLIC


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class PublicResolver(ThreadedResolver):
    """The event loop's getaddrinfo, refusing a name if any address it resolves to is not public.

    Refusing the whole name (not filtering its bad addresses) keeps a name that mixes public
    and internal addresses from being used to reach the internal ones.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        # The messages name the host as the caller gave it, never what it resolved to: the
        # answer must not map the gateway's internal names to addresses for whoever asks.
        try:
            results = await super().resolve(host, port, family)
        except OSError:
            raise UnsafeTarget(f"callback URL refused: {host} does not resolve") from None
        if not results:
            raise UnsafeTarget(f"callback URL refused: {host} does not resolve")
        for result in results:
            address = _literal(result["host"].partition("%")[0])  # drop an IPv6 zone id
            if address is None or _refusal(address):
                raise UnsafeTarget(f"callback URL refused: {host} is {NOT_PUBLIC}")
        return results


def _checked_url(url: str) -> URL:
    bad = InvalidInput(f"url {url!r} is not an http(s) URL", {"url": ["Must be an http or https URL."]})
    try:
        parsed = URL(url)
        host, _port = parsed.host, parsed.port  # yarl checks both only when asked: "[::1", port 99999
        if host and _literal(host) is None:
            host.encode("idna")  # as the resolver will: an empty or over-long label ("a..b", "xn--")
    except ValueError:  # UnicodeError (IDNA) included
        raise bad from None
    if parsed.scheme not in ("http", "https") or not host:
        raise bad
    return parsed


def _check_literal(parsed: URL) -> None:
    address = _literal(parsed.host or "")
    if address is not None and _refusal(address):
        raise UnsafeTarget(f"callback URL refused: {parsed.host} is {NOT_PUBLIC}")


async def check_target(url: str, *, allow_private: bool) -> None:
    """InvalidInput for a non-http(s) URL; UnsafeTarget if it is, or resolves to, a non-public address."""
    parsed = _checked_url(url)
    if allow_private:
        return
    _check_literal(parsed)
    if _literal(parsed.host or "") is None:
        await PublicResolver().resolve(parsed.host or "", parsed.port or 0)


def event_body(event: DueEvent) -> bytes:
    """The callback body of an event; the same bytes on every attempt (a site's timezone is fixed)."""
    return callback_body(
        site_id=event.site_id,
        dg_no=event.dg_no,
        status=event.status,
        date_time=local_time(event.at, zoneinfo.ZoneInfo(event.timezone)),
        event_id=event.event_id,
    )


DELIVERIES = Counter(
    "gateway_callback_deliveries",
    "Callback POST attempts by outcome: delivered (2xx), rejected (another HTTP status), failed (no answer)",
    ["outcome"],
)
DELIVERED, REJECTED, FAILED = (DELIVERIES.labels(outcome) for outcome in ("delivered", "rejected", "failed"))


def site_event_json(event: DueSiteEvent) -> bytes:
    """A site event's body; the same bytes on every attempt."""
    return site_event_body(
        event_id=event.event_id,
        type=event.type,
        site_id=event.site_id,
        meter_no=event.meter_no,
        at=event.at.isoformat().replace("+00:00", "Z"),
        data=event.data,
    )


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came to: the HTTP status, or the error that prevented one, and how long it took."""

    http_status: int | None
    error: str
    latency_ms: int

    @property
    def delivered(self) -> bool:
        """2xx only: a redirect is not followed, so it is not a delivery."""
        return self.http_status is not None and 200 <= self.http_status < 300


class WebhookSender:
    """POSTs signed callbacks through one ClientSession; never follows redirects."""

    def __init__(self, session: aiohttp.ClientSession, *, allow_private: bool) -> None:
        self._session = session
        self._allow_private = allow_private

    async def deliver(self, event: DueEvent | DueSiteEvent, *, at: dt.datetime) -> AttemptResult:
        """One attempt at an event (a DG callback or a site event), signed and stamped with the time `at`."""
        body = event_body(event) if isinstance(event, DueEvent) else site_event_json(event)
        headers = signed_headers(event.secret, msg_id=event.event_id, timestamp=int(at.timestamp()), body=body)
        return await self.post(event.url, headers=headers, body=body)

    async def post(self, url: str, *, headers: dict[str, str], body: bytes) -> AttemptResult:
        """One attempt; never raises for the receiver's or the network's failures, it reports them."""
        started = time.perf_counter()
        try:
            parsed = _checked_url(url)
            if not self._allow_private:
                _check_literal(parsed)  # names are checked by the connector's PublicResolver
            async with self._session.post(
                url,
                data=body,
                headers={**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT},
                allow_redirects=False,
            ) as response:
                status, error = response.status, ""
        except (aiohttp.ClientError, TimeoutError, DomainError) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        attempt = AttemptResult(status, error, round((time.perf_counter() - started) * 1000))
        (DELIVERED if attempt.delivered else FAILED if status is None else REJECTED).inc()
        return attempt


@contextlib.asynccontextmanager
async def open_sender(
    *, allow_private: bool, max_connections: int = 16, per_host: int = 4
) -> AsyncIterator[WebhookSender]:
    """The sender with its one ClientSession, open for the duration of the block.

    `per_host` bounds the connections to one receiver, so a slow one cannot take the pool
    (the delivery job also limits its attempts per receiver: scheduler.deliveries).
    """
    resolver = None if allow_private else PublicResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, limit=max_connections, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, trust_env=False) as session:
        yield WebhookSender(session, allow_private=allow_private)
    if resolver is not None:
        await resolver.close()
