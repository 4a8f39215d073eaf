"""Throttling of logins, registrations and password changes that cannot be turned against a user.

- Per client address (`AddressLimiter`): every attempt counts, successful ones too (each costs an
  Argon2 hash), and the limit is high enough for a whole housing society behind one NAT. IPv6
  clients count per /64 (one subscriber's prefix). The table has a fixed size; when it is full
  of live entries a new address is not tracked (and a warning logged) rather than evicting
  another's counter: cheap requests cannot flush anyone's count.
- Per account: a growing delay after wrong passwords, kept in the database with the account
  (`storage.portal.portal_users.failure_delay`): the same in every process, and the right password
  gets in once the delay is over, so nobody can lock an owner out.
- Logins naming no account get the same delays as decoys (`UnknownLogins`), so a 429 does not
  tell that an account exists.
- Per meter, for FIN guesses at registration (`ClaimGuesses`): the same delay rule, in memory,
  only for meters that exist, so it is bounded by the number of meters and never evicted.

In memory and per process: with several processes each counts on its own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections import OrderedDict

from storage.portal.portal_users import FORGET_FAILURES_AFTER, wait_left

ADDRESS_ATTEMPTS = 300
WINDOW = dt.timedelta(minutes=15)
MAX_ADDRESSES = 100_000

log = logging.getLogger("gateway.portal")


def address_key(address: str) -> str:
    """The key an address counts under: an IPv4 address, or the /64 of an IPv6 one."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a Unix socket peer): counted as given
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else parsed)


class AddressLimiter:
    """At most `max_attempts` per address in each fixed window of `window`."""

    def __init__(
        self, *, max_attempts: int = ADDRESS_ATTEMPTS, window: dt.timedelta = WINDOW, max_keys: int = MAX_ADDRESSES
    ) -> None:
        self.max_attempts = max_attempts
        self.window = window
        self.max_keys = max_keys
        self._counts: dict[str, tuple[dt.datetime, int]] = {}
        self._warned_at: dt.datetime | None = None

    def attempt(self, address: str, now: dt.datetime) -> int:
        """Count one attempt from this address; seconds to wait (then nothing is counted) or 0."""
        key = address_key(address)
        started, count = self._counts.get(key, (now, 0))
        if now >= started + self.window:
            started, count = now, 0
        if count >= self.max_attempts:
            left = started + self.window - now
            return int(left.total_seconds()) + 1
        if key not in self._counts and len(self._counts) >= self.max_keys and not self._sweep(now):
            self._warn_full(now)
            return 0
        self._counts[key] = (started, count + 1)
        return 0

    def _sweep(self, now: dt.datetime) -> bool:
        """Drop windows that have ended; True if room was made."""
        ended = [key for key, (started, _) in self._counts.items() if now >= started + self.window]
        for key in ended:
            del self._counts[key]
        return len(self._counts) < self.max_keys

    def _warn_full(self, now: dt.datetime) -> None:
        if self._warned_at is None or now - self._warned_at >= self.window:
            self._warned_at = now
            log.warning(
                "portal login limiter full (%d addresses in the last %s): new addresses are not tracked; "
                "per-account delays still apply",
                self.max_keys,
                self.window,
            )


class UnknownLogins:
    """Decoy delays for logins that name no account, so that a 429 after a few wrong passwords
    does not tell that an account exists. Bounded (the oldest decoy goes first when full):
    dropping a decoy costs only the disguise, never a real account's delay, which is stored
    with the account."""

    def __init__(self, max_keys: int = 50_000) -> None:
        self.max_keys = max_keys
        self._failures: OrderedDict[str, tuple[int, dt.datetime]] = OrderedDict()

    def wait(self, login: str, now: dt.datetime) -> int:
        """Seconds a real account with these failures would have to wait (0: go ahead)."""
        failures, last = self._failures.get(login, (0, None))
        return wait_left(failures, last, now)

    def failed(self, login: str, now: dt.datetime) -> None:
        """One more wrong try at this name."""
        failures, last = self._failures.pop(login, (0, now))
        if now - last >= FORGET_FAILURES_AFTER:
            failures = 0
        self._failures[login] = (failures + 1, now)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)


class ClaimGuesses:
    """Wrong FINs per existing meter, with the accounts' growing delay."""

    def __init__(self) -> None:
        self._failures: dict[int, tuple[int, dt.datetime]] = {}

    def wait(self, meter_no: int, now: dt.datetime) -> int:
        """Seconds before the next registration try for this meter (0: go ahead)."""
        failures, last = self._failures.get(meter_no, (0, None))
        return wait_left(failures, last, now)

    def failed(self, meter_no: int, now: dt.datetime) -> None:
        """Count a wrong FIN (or a claimed meter) for a meter that exists."""
        failures, last = self._failures.get(meter_no, (0, now))
        if now - last >= FORGET_FAILURES_AFTER:
            failures = 0  # a day old: forgotten
        self._failures[meter_no] = (failures + 1, now)

    def forget(self, meter_no: int) -> None:
        """The meter was claimed: its guesses are over."""
        self._failures.pop(meter_no, None)
