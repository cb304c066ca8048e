"""The engine and the headless path never import Textual (checked in a fresh interpreter)."""

import subprocess
import sys

import pytest

HEADLESS = ["relconsole", "relconsole.cli", "relconsole.config", "relconsole.events",
            "relconsole.pipeline", "relconsole.headless", "relconsole.status",
            "relconsole.ssh", "relconsole.supervisor", "relconsole.supervise"]


@pytest.mark.parametrize("module", HEADLESS)
def test_module_does_not_import_textual(module):
    code = f"import sys, {module}; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_headless_help_does_not_import_textual_or_the_engine():
    code = ("import sys\nfrom relconsole.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('textual', 'paramiko', 'git') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
