"""Domain errors. The gateway's one error middleware maps each kind to an HTTP reply."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the store and adapters raise on purpose."""

    kind = "error"

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class InvalidInput(DomainError):
    """The request's data is malformed or out of range (400)."""

    kind = "invalid"


class NotFound(DomainError):
    """The object does not exist or lies outside the caller's sites (404)."""

    kind = "not_found"


class Conflict(DomainError):
    """The request contradicts stored state: duplicate id, conflicting reading, retired meter (409)."""

    kind = "conflict"


class Unauthorized(DomainError):
    """No credential or an invalid one (401)."""

    kind = "unauthorized"


class Forbidden(DomainError):
    """The credential is valid but lacks the role (403)."""

    kind = "forbidden"


class Refused(DomainError):
    """Well-formed, but refused: by the head-end (a command or credit), or by the gateway itself
    (e.g. a callback URL to a private address) (422)."""

    kind = "refused"


class TooLarge(DomainError):
    """The request body or batch is larger than allowed (413)."""

    kind = "too_large"


class Overloaded(DomainError):
    """The gateway cannot take more work now; the client should retry later (503)."""

    kind = "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HeadEndFailed(DomainError):
    """The head-end failed or never answered within the deadline; the outcome is unknown (502)."""

    kind = "headend_failed"


class HeadEndUnreachable(DomainError):
    """The head-end answered that the meter cannot be reached; nothing was done (504)."""

    kind = "unreachable"


def unknown(what: str, name: object, *, field: str, where: str = "", reason: str = "") -> NotFound:
    """The one wording of "there is no such object" (also said of objects outside the caller's
    sites, so that they look unknown): "unknown site 'S1'", "unknown meter 5", "unknown DG
    'DG1' on site 'S1'", with `field` naming the input and `reason` (default "Unknown <what>.").
    Text names are quoted, numbers not."""
    shown = repr(name) if isinstance(name, str) else str(name)
    return NotFound(f"unknown {what} {shown}{where}", {field: [reason or f"Unknown {what}."]})


def unknown_site(site_id: str, field: str = "site_id") -> NotFound:
    """`unknown` for a site; in a list of sites (`field` "sites") the reason names it."""
    return unknown("site", site_id, field=field, reason="" if field == "site_id" else f"Unknown site {site_id!r}.")


def unknown_meter(meter_no: int) -> NotFound:
    """`unknown` for a meter."""
    return unknown("meter", meter_no, field="meter_no")


def unknown_dg(site_id: str, dg_no: str) -> NotFound:
    """`unknown` for a DG of a site."""
    return unknown("DG", dg_no, field="dg_number", where=f" on site {site_id!r}")
