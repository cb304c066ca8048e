import sys

from relconsole.cli import entry

sys.exit(entry())
