"""Test-only fault points (tests/reliability/faults.py) and the orphan setting the crash runs shorten."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from tests.reliability.faults import AFTER_COMMIT, AFTER_CREDIT, FaultPoints, parse_fault_points

REPO = Path(__file__).resolve().parent.parent


def test_the_gateway_has_no_fault_points_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_FAULT_POINTS", "recharge.after_credit")  # the old variable: read by nothing
    assert "fault_points" not in Settings.model_fields
    Settings()
    faults = FaultPoints("")
    assert faults.armed == {}
    faults.reach(AFTER_CREDIT)  # nothing happens: this process lives on


def test_fault_point_list_names_points_and_counts() -> None:
    assert parse_fault_points(f" {AFTER_CREDIT}, {AFTER_COMMIT}:3 ") == {AFTER_CREDIT: 1, AFTER_COMMIT: 3}
    with pytest.raises(ValueError, match=r"unknown fault point 'recharge\.after_credits'"):
        parse_fault_points("recharge.after_credits")
    with pytest.raises(ValueError, match="whole number from 1"):
        parse_fault_points(f"{AFTER_COMMIT}:0")


def test_the_faulty_gateway_refuses_an_unknown_fault_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.faulty_gateway", "--faults", "recharge.after_comit"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "unknown fault point 'recharge.after_comit'" in done.stderr


def test_an_armed_point_kills_the_process_at_its_nth_hit() -> None:
    program = (
        "from tests.reliability.faults import FaultPoints\n"
        "faults = FaultPoints('recharge.after_credit:2')\n"
        "faults.reach('recharge.after_commit')\n"
        "faults.reach('recharge.after_credit'); print('first hit passed', flush=True)\n"
        "faults.reach('recharge.after_credit'); print('still alive', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == "first hit passed\n"
    assert "fault point recharge.after_credit reached: killing this process" in done.stderr


def test_orphan_time_defaults_to_two_minutes_and_must_outlast_a_headend_call() -> None:
    assert Settings().orphaned_after == 120
    assert Settings(headend_deadline_seconds=60).orphaned_after == 240
    assert Settings(orphan_after_seconds=3, headend_deadline_seconds=2).orphaned_after == 3
    with pytest.raises(ValidationError, match="longer than headend_deadline_seconds"):
        Settings(orphan_after_seconds=10)  # the deadline is 15 s
