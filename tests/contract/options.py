"""The contract suite's command-line options (registered from tests/conftest.py, the suite's root)."""

from __future__ import annotations

import pytest


def add_contract_options(parser: pytest.Parser) -> None:
    """`--base-url` and friends: point tests/contract at any deployment."""
    group = parser.getgroup("contract", "contract suite (tests/contract): which deployment to test")
    group.addoption("--base-url", help="the gateway to test (default: start one wired to mock-meter-server)")
    group.addoption("--api-key", help="X-API-Key for the Factech calls (role read; operate for --allow-writes)")
    group.addoption("--site-id", help="a site the key covers")
    group.addoption("--allow-writes", action="store_true", help="also recharge, start/stop, ingest, register callbacks")
    group.addoption("--ingest-key", help="API key with role ingest for the site (ingest and DG callback scenarios)")
    group.addoption("--meter-no", help="a meter of the site (default: the first one call 1 lists)")
    group.addoption("--dg-number", help="a DG of the site (default: DG calls skip on a foreign deployment)")
    group.addoption("--callback-host", default="127.0.0.1", help="an address of this machine the gateway can reach")
