"""Packaging: compatible ranges in setup.cfg, hashed locks that satisfy them, the LICENSE it names."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def requirements(text: str) -> list[Requirement]:
    return [
        Requirement(line) for line in text.strip().splitlines() if line.strip() and not line.strip().startswith("#")
    ]


def pins(lock: Path) -> dict[str, str]:
    """name → version pinned by a pip-compile lock; every pin must carry hashes."""
    text = lock.read_text()
    entries = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)", text, re.M)
    pinned_lines = re.findall(r"^[A-Za-z0-9_.\-]+==", text, re.M)
    assert len(entries) == len(pinned_lines), f"{lock.name}: a pin without hashes"
    return {canonicalize_name(name): version for name, version, _hashes in entries}


def test_the_library_declares_compatible_ranges_not_pins() -> None:
    core = requirements(setup_cfg()["options"]["install_requires"])
    assert {canonicalize_name(r.name) for r in core} >= {"tzdata", "aiohttp", "prometheus-client"}
    for requirement in core:
        assert not any(spec.operator == "==" for spec in requirement.specifier), requirement


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ["postgres"]), ("requirements-dev.lock", ["postgres", "test"])]
)
def test_each_lock_pins_a_version_every_requirement_accepts(lock: str, extras: list[str]) -> None:
    cfg = setup_cfg()
    wanted = requirements(cfg["options"]["install_requires"])
    for extra in extras:
        wanted += requirements(cfg["options.extras_require"][extra])
    pinned = pins(ROOT / lock)
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, setup.cfg wants {requirement.specifier}: run `make lock`"
        )


def test_the_license_setup_cfg_names_is_there() -> None:
    assert setup_cfg()["metadata"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
