"""The check stage runs real local processes: streaming, exit codes, timeouts, cancel."""

import os
import threading
import time

from relconsole.config import Check
from relconsole.stages.check import run_check


def run(cmd, tmp_path, timeout=30.0, cancel=None):
    lines = []
    stamps = []

    def emit(line):
        lines.append(line)
        stamps.append(time.monotonic())

    result = run_check(
        Check("c", cmd, timeout), tmp_path, os.environ, emit, cancel or threading.Event()
    )
    return result, lines, stamps


def test_output_streams_line_by_line_as_printed(tmp_path):
    result, lines, stamps = run("echo one; sleep 0.5; echo two", tmp_path)
    assert result.ok and lines == ["one", "two"]
    assert stamps[1] - stamps[0] > 0.4, "the first line must arrive before the process ends"


def test_failing_check_reports_its_exit_code(tmp_path):
    result, lines, _ = run("echo bad >&2; exit 3", tmp_path)
    assert not result.ok and result.exit_code == 3 and lines == ["bad"]
    assert "exit code 3" in result.describe()


def test_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "child-survived"
    started = time.monotonic()
    result, _, _ = run(f"(sleep 1.2; touch {marker}) & sleep 60", tmp_path, timeout=0.5)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 5
    time.sleep(max(0.0, started + 1.7 - time.monotonic()))  # past the child's touch
    assert not marker.exists(), "a child of the check outlived the timeout"


def test_cancel_stops_a_running_check(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result, _, _ = run("sleep 60", tmp_path, cancel=cancel)
    assert result.cancelled and time.monotonic() - started < 5
