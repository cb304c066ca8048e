"""``relconsole --demo``: a sandbox of local hosts, a sample repository and its config.

The sandbox itself is :mod:`relconsole.demo.sandbox`; the sample repository's files and
the hosts' supervisord config are package data under ``files/``.
"""

from relconsole.demo.sandbox import DemoError, ensure_demo, stop_demo

__all__ = ["DemoError", "ensure_demo", "stop_demo"]
