"""relconsole: a release console for services on your own servers.

Kept tiny on purpose: `relconsole --help` and headless runs import only what they use.
"""

__version__ = "0.1.0"
