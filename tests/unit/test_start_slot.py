"""Test stacks start one at a time: the start slot is held by whoever has its file open, a child included."""

from __future__ import annotations

import subprocess
import time

from tests.e2e import conftest


def test_a_start_handed_to_a_child_holds_the_slot_until_the_child_exits(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "START_SLOT", tmp_path / "slot")  # not the machine's real slot
    with conftest.start_slot() as slot:
        child = subprocess.Popen(["sleep", "2"], pass_fds=(slot.fileno(),))
    asked = time.monotonic()
    with conftest.start_slot():
        waited = time.monotonic() - asked
        assert child.poll() is not None  # the next start came only after the child's
    assert waited > 1


def test_a_slot_held_too_long_is_given_up_on(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "START_SLOT", tmp_path / "slot")
    with conftest.start_slot(), conftest.start_slot(wait_s=1.5):
        pass  # a hung start does not block the others for good
