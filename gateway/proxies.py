"""Who the client is behind a reverse proxy, believed only when the proxy is a trusted one.

`X-Forwarded-For` and `X-Forwarded-Proto` are anyone's to send: they count only when the TCP
peer is in `GATEWAY_TRUSTED_PROXIES`. The client is then the right-most address in
`X-Forwarded-For` that is not itself a trusted proxy (entries further left were written by the
client and prove nothing). A small check with `ipaddress` rather than aiohttp-remotes'
middleware (maintained, 1.4.0): that one rewrites every request, the ingest hot path included,
and only the portal's rate limits, cookies and (later) the audit trail need the answer.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from gateway.app_keys import SETTINGS
from gateway.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip().split("%", 1)[0])  # an IPv6 zone ("%eth0") is not ours to judge
    except ValueError:
        return None


def _trusted(address: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(address.version == network.version and address in network for network in networks)


def peer_is_trusted_proxy(request: web.Request) -> bool:
    """True when the TCP peer is one of GATEWAY_TRUSTED_PROXIES."""
    networks = request.app[SETTINGS].trusted_proxy_networks
    return bool(networks) and _trusted(_address(request.remote or ""), networks)


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or what a trusted proxy says the client was."""
    peer = request.remote or ""
    if not peer_is_trusted_proxy(request):
        return peer
    networks = request.app[SETTINGS].trusted_proxy_networks
    hops = [hop for header in request.headers.getall("X-Forwarded-For", ()) for hop in header.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer  # garbage where our proxy writes the address: trust nothing beyond it
        if not _trusted(address, networks):
            return str(address)
    return str(_address(hops[0])) if hops else peer  # every hop a proxy of ours: the first is the client


def came_over_https(request: web.Request) -> bool:
    """True when the client used HTTPS: to us directly, or to a trusted proxy that says so."""
    if request.secure:
        return True
    if not peer_is_trusted_proxy(request):
        return False
    proto = request.headers.get("X-Forwarded-Proto", "")
    return proto.rsplit(",", 1)[-1].strip().lower() == "https"
