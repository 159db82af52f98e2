"""The integration tests' wait helper: a dead child fails the wait at once, with its log."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import wait_until


def test_wait_fails_at_once_with_the_log_when_the_child_has_exited():
    child = subprocess.Popen(
        [sys.executable, "-c", "print('error: no model artifact'); raise SystemExit(3)"],
        stdout=subprocess.PIPE,
    )
    child.wait(30)
    out = child.stdout.read().decode() if child.stdout else ""
    with pytest.raises(pytest.fail.Exception, match=r"exited with code 3 (.|\n)*no model artifact"):
        wait_until(lambda: False, 30, alive=child, logs=lambda: out)


def test_wait_returns_true_when_the_condition_held_as_the_child_exited():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    assert wait_until(lambda: True, 30, alive=child)
    assert wait_until(lambda: False, 0.3) is False
