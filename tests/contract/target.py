"""The deployment under test, and how to check a reply against its published spec.

`Target` is what every contract test receives: where the gateway is, which key and site to
use, whether writes are allowed, and the deployment's own `/openapi.json`. Operations missing
from that spec (calls 3, 4, 6-9 until branch `commands` is merged) make their tests skip, with
the reason printed, instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
import requests

from tests.contract.local import LocalDeployment

TIMEOUT = 15


@dataclass
class Target:
    """A deployment and what the suite may do to it."""

    base_url: str
    api_key: str
    site_id: str
    allow_writes: bool
    spec: dict[str, Any]
    local: LocalDeployment | None = None
    ingest_key: str | None = None
    meter_no: str | None = None
    dg_number: str | None = None
    callback_host: str = "127.0.0.1"

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def has(self, method: str, path: str) -> bool:
        """True when the deployment's spec lists this operation."""
        return method.lower() in self.spec.get("paths", {}).get(path, {})

    def require(self, method: str, path: str) -> None:
        """Skip (with the reason) when the deployment does not offer this operation."""
        if not self.has(method, path):
            pytest.skip(f"{method} {path} is not in this deployment's /openapi.json (not implemented there yet)")

    def require_writes(self, what: str) -> None:
        """Skip unless writes are allowed (always on the suite's own deployment)."""
        if not self.allow_writes:
            pytest.skip(f"{what} changes data: pass --allow-writes to run it against {self.base_url}")

    def require_local(self, what: str) -> LocalDeployment:
        """Skip unless the suite started the deployment (it needs the mock head-end's fault controls)."""
        if self.local is None:
            pytest.skip(f"{what} injects head-end faults: it runs only against the suite's own deployment")
        return self.local

    def call(self, method: str, path: str, *, key: str | None = "default", **kwargs: Any) -> requests.Response:
        """An HTTP request with the API key (`key=None`: none; another string: that key)."""
        headers = dict(kwargs.pop("headers", {}))
        if key == "default":
            key = self.api_key
        if key is not None:
            headers["X-API-Key"] = key
        return requests.request(method, self.url(path), headers=headers, timeout=TIMEOUT, **kwargs)

    def checked(self, method: str, path: str, *, expect: int | tuple[int, ...], **kwargs: Any) -> dict[str, Any]:
        """Call, assert the status, check the body against the spec; the parsed body."""
        response = self.call(method, path, **kwargs)
        statuses = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in statuses, f"{method} {path}: {response.status_code} {response.text[:500]}"
        body = response.json()
        conforms(self.spec, method, path, response.status_code, body)
        return body


def _template(spec: dict[str, Any], path: str) -> str:
    """The spec's path template matching a concrete path."""
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not in the spec")


def conforms(spec: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    """AssertionError unless `body` is what the spec says this operation answers with `status`."""
    operation = spec["paths"][_template(spec, path)][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path}: status {status} is not documented"
    schema = response["content"]["application/json"]["schema"]
    # Resolve `#/components/...` references against the spec: the schema becomes a document
    # that carries the spec's components beside it.
    document = {**schema, "components": spec.get("components", {})}
    errors = [error.message for error in jsonschema_rs.Draft202012Validator(document).iter_errors(body)]
    assert not errors, f"{method} {path} {status} breaks the spec: {errors[:3]}; body: {str(body)[:500]}"
