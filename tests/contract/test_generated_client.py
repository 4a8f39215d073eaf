"""An integrator's client, generated from the published spec by `openapi-python-client`, against a
running gateway: the Factech calls 1-13, `POST /meter` (one packet and a batch), `POST /dg`, the
admin calls that set up its own site, and a report. Every reply must parse into the generated
model its status promises, and hold every key and value the gateway sent; replies outside the
Factech calls must also load with the marshmallow schema the spec took them from.

Generated once per session into a temporary directory (a couple of seconds); runs only against
the suite's own deployment (it creates a site, meters, keys and a meter change).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from marshmallow import Schema, ValidationError

from openapi.__main__ import SPEC_PATH
from schemas import admin_replies, replies
from tests.contract.local import LocalDeployment
from tests.contract.target import Target, _template

PACKAGE = "generated_gateway_client"
# Reply schemas by component name: replies outside the Factech calls are loaded with them too.
REPLY_SCHEMAS: dict[str, type[Schema]] = {
    name: value
    for module in (replies, admin_replies)
    for name, value in vars(module).items()
    if isinstance(value, type) and issubclass(value, Schema)
}


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package generated from the committed spec (the file `/openapi.json` serves)."""
    out = tmp_path_factory.mktemp("client")
    # The generator formats its output with `ruff`, which is installed beside this Python.
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(SPEC_PATH), "--meta", "none",
         "--output-path", str(out / PACKAGE)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": path},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Any warning means a schema or an operation was dropped from the client.
    assert "Warning" not in output and "WARNING" not in output and "Unable" not in output, output
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


class Caller:
    """Calls generated operations and checks each reply."""

    def __init__(self, generated: ModuleType, target: Target) -> None:
        self.package = generated.__name__
        self.spec = target.spec
        self.base_url = target.base_url
        self.models = importlib.import_module(f"{self.package}.models")
        self.clients: list[Any] = []

    def client(self, key: str, *, bearer: bool = False) -> Any:
        """An authenticated client: `X-API-Key`, or `Authorization: Bearer` for ingest."""
        client_module = importlib.import_module(f"{self.package}.client")
        if bearer:
            client = client_module.AuthenticatedClient(base_url=self.base_url, token=key)
        else:
            client = client_module.AuthenticatedClient(
                base_url=self.base_url, token=key, prefix="", auth_header_name="X-API-Key"
            )
        self.clients.append(client)
        return client

    def close(self) -> None:
        """Close every client's connections."""
        for client in self.clients:
            client.get_httpx_client().close()

    def model(self, name: str, data: dict[str, Any]) -> Any:
        """A request body as the generated model."""
        return getattr(self.models, name).from_dict(data)

    def call(self, tag: str, operation: str, expect: int | tuple[int, ...], **kwargs: Any) -> Any:
        """Call `tag.operation`, check the status and the parsed reply; the parsed model."""
        module = importlib.import_module(f"{self.package}.api.{tag}.{operation}")
        request = module._get_kwargs(**{name: value for name, value in kwargs.items() if name != "client"})
        response = module.sync_detailed(**kwargs)
        statuses = (expect,) if isinstance(expect, int) else expect
        text = response.content.decode()
        assert response.status_code in statuses, f"{operation}: {response.status_code} {text[:500]}"
        parsed = response.parsed
        assert parsed is not None, f"{operation}: a {response.status_code} reply did not parse: {text[:500]}"
        assert type(parsed).__module__.startswith(f"{self.package}.models."), f"{operation}: {type(parsed)}"
        sent = json.loads(response.content)
        assert same(parsed.to_dict(), sent), f"{operation}: the model changed {sent} into {parsed.to_dict()}"
        self.load_with_reply_schema(request["method"], request["url"], int(response.status_code), sent)
        return parsed

    def load_with_reply_schema(self, method: str, url: str, status: int, body: Any) -> None:
        """Outside the Factech calls: the reply loads with the marshmallow schema its spec entry names."""
        responses = self.spec["paths"][_template(self.spec, url)][method]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        names = [branch.get("$ref", "").rsplit("/", 1)[-1] for branch in schema.get("oneOf", [schema])]
        if names == ["TodayReadings"]:
            replies.TODAY_READINGS.deserialize(body)
            return
        known = [REPLY_SCHEMAS[name] for name in names if name in REPLY_SCHEMAS]
        if not known:
            return  # a Factech envelope: rendered by adapters.factech, checked against the spec elsewhere
        problems = []
        for reply_schema in known:
            try:
                reply_schema().load(body)
                return
            except ValidationError as err:
                problems.append(f"{reply_schema.__name__}: {err.messages}")
        pytest.fail(f"{method} {url} {status}: {problems}")


def same(parsed: Any, sent: Any) -> bool:
    """The model's dict holds what was sent: the same keys and values (a time may be spelled another way)."""
    if isinstance(parsed, dict) and isinstance(sent, dict):
        return parsed.keys() == sent.keys() and all(same(parsed[key], sent[key]) for key in sent)
    if isinstance(parsed, list) and isinstance(sent, list):
        return len(parsed) == len(sent) and all(same(a, b) for a, b in zip(parsed, sent, strict=True))
    if isinstance(parsed, str) and isinstance(sent, str) and parsed != sent:
        try:
            return dt.datetime.fromisoformat(parsed) == dt.datetime.fromisoformat(sent)
        except ValueError:
            return False
    return parsed == sent and type(parsed) is type(sent)


@pytest.fixture
def caller(generated: ModuleType, target: Target, local_deployment: LocalDeployment | None) -> Iterator[Caller]:
    if local_deployment is None:
        pytest.skip("the generated client sets up its own site: it runs only against the suite's own deployment")
    calls = Caller(generated, target)
    yield calls
    calls.close()


def test_a_generated_client_calls_the_gateway_and_parses_every_reply(
    caller: Caller, local_deployment: LocalDeployment
) -> None:
    call, model = caller.call, caller.model
    admin = caller.client(local_deployment.keys["admin"])
    # Two admin calls and more: a site of its own, three meters, a DG, an operate and an ingest key.
    site_id = f"GEN-{uuid.uuid4().hex[:8]}"
    first = 730000000 + uuid.uuid4().int % 10**6 * 10
    meter_a, meter_b, meter_c = first, first + 1, first + 2
    site = call(
        "admin",
        "post_api_v1_admin_sites",
        201,
        client=admin,
        body=model("SiteCreate", {"site_id": site_id, "name": "Generated", "region": "North"}),
    )
    assert site.data.site_id == site_id
    tokens = {}
    for meter_no in (meter_a, meter_b):
        created = call(
            "admin",
            "post_api_v1_admin_sites_site_id_meters",
            201,
            client=admin,
            site_id=site_id,
            body=model("MeterCreate", {"meter_no": meter_no, "unit_no": f"G-{meter_no % 1000}"}),
        )
        tokens[meter_no] = created.data.token
    call(
        "admin",
        "post_api_v1_admin_sites_site_id_dgs",
        201,
        client=admin,
        site_id=site_id,
        body=model("DgCreate", {"dg_number": "GDG"}),
    )
    keys = {}
    for role in ("operate", "ingest"):
        created = call(
            "admin",
            "post_api_v1_admin_keys",
            201,
            client=admin,
            body=model("KeyCreate", {"name": f"{site_id}-{role}", "role": role, "sites": [site_id]}),
        )
        keys[role] = created.data.key
    assert call("admin", "get_api_v1_admin_sites_site_id_meters", 200, client=admin, site_id=site_id).data

    # Ingest: one packet with the meter's device token, a batch with the ingest key (one packet bad).
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = (now - dt.timedelta(hours=1)).isoformat()
    packet = {"id": meter_a, "timestamp": stamp, "reading_kWh": 1.5}
    device = caller.client(tokens[meter_a], bearer=True)
    stored = call("ingest", "post_meter", 200, client=device, body=model("MeterPacket", packet))
    assert stored.data.duplicate is False
    ingest = caller.client(keys["ingest"], bearer=True)
    older = (now - dt.timedelta(hours=2)).isoformat()
    batch = [
        model("MeterPacket", {"id": meter_b, "timestamp": older, "reading_kWh": 2.0}),
        model("MeterPacket", packet),
        model("MeterPacket", {"id": first + 9, "timestamp": older, "reading_kWh": 1.0}),
    ]  # unknown meter
    partial = call("ingest", "post_meter", 207, client=ingest, body=batch)
    assert (partial.data.accepted, partial.data.duplicates, len(partial.data.rejected)) == (1, 1, 1)
    call(
        "ingest",
        "post_dg",
        200,
        client=ingest,
        body=model(
            "DgPacket",
            {
                "site_id": site_id,
                "dg_number": "GDG",
                "timestamp": stamp,
                "status": "ON",
                "fuel_litres": 120.5,
                "reading_kWh": 42.25,
            },
        ),
    )

    # The Factech calls 1-13 with the site's operate key.
    operate = caller.client(keys["operate"])
    site_meter = {"site_id": site_id, "meter_no": str(meter_b)}
    readings = call("factech", "call1", 200, client=operate, site_id=site_id)
    assert readings.count == "2"
    call("factech", "call2", 200, client=operate, meter_no=str(meter_a))
    recharge = call(
        "factech",
        "call3",
        (200, 202),
        client=operate,
        idempotency_key=f"gen-{uuid.uuid4().hex}",
        body=model("RechargeRequest", {**site_meter, "amount": "100.00"}),
    )
    transaction_id = recharge.data.transaction_id
    call("factech", "call4", (200, 202), client=operate, site_id=site_id, transaction_id=transaction_id)
    call("factech", "call7", 200, client=operate, body=model("SiteMeterQuery", site_meter))
    call("factech", "call6", 200, client=operate, body=model("SiteMeterQuery", site_meter))
    call("factech", "call8", 200, client=operate, **site_meter)
    call(
        "factech",
        "call9",
        200,
        client=operate,
        body=model("LoadRequest", {**site_meter, "load_dg": "2.50", "load_grid": "5.00"}),
    )
    dg = {"site_id": site_id, "dg_number": "GDG"}
    call("factech", "call10", 200, client=operate, **dg)
    call(
        "factech",
        "call11",
        200,
        client=operate,
        body=model("DgSensingInput", {**dg, "url": "http://127.0.0.1:9/dg-callback"}),
    )
    assert call("factech", "call12", 200, client=operate, **dg).data.status == "ON"
    call("factech", "call13", 200, client=operate, **dg)
    # Call 5 after an admin meter change (meter A replaced by C today, site time).
    today = dt.datetime.now(ZoneInfo("Asia/Kolkata")).date()
    call(
        "admin",
        "post_api_v1_admin_meter_changes",
        201,
        client=admin,
        body=model(
            "MeterChangeCreate",
            {
                "site_id": site_id,
                "old_meter_no": meter_a,
                "new_meter_no": meter_c,
                "meter_change_date": today.isoformat(),
            },
        ),
    )
    window = {
        "from_date": (today - dt.timedelta(days=1)),
        "to_date": (today + dt.timedelta(days=1)),
    }
    changes = call("factech", "call5", 200, client=operate, site_id=site_id, **window)
    assert changes.data[0].new_meter_no == str(meter_c)

    # An error reply parses too, and the admin reads of the ledger and the day.
    missing = call("factech", "call2", 404, client=operate, meter_no=str(first + 9))
    assert missing.message == "Not Found"
    assert call("admin", "get_api_v1_admin_meters_meter_no_ledger", 200, client=admin, meter_no=str(meter_b)).data.check
    unknown = call("admin", "get_api_v1_admin_meters_meter_no", 404, client=admin, meter_no=str(first + 9))
    assert unknown.status == "error" and unknown.errors
    call("reports", "get_api_v1_admin_today", 200, client=admin, site_id=site_id)
    call("operations", "get_healthz", 200, client=caller.client("none"))
