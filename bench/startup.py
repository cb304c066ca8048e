"""``relconsole --help`` against ``python -c pass``: the cost of starting relconsole.

Run from the repo root: python3 -m bench.startup [--runs 30]. Uses the installed
``relconsole`` console script (pip install .) and the same interpreter for both.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from bench.common import alternate, median, print_table, row, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    script = shutil.which("relconsole")
    if script is None:
        sys.exit("relconsole is not installed (pip install .)")

    def quiet(argv):
        return lambda: timed(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True))

    ours, theirs = alternate(
        quiet([script, "--help"]), quiet([sys.executable, "-c", "pass"]), args.runs
    )
    print_table(
        [row("relconsole --help", median(ours), median(theirs), "python -c pass", target="<= 3x")]
    )


if __name__ == "__main__":
    main()
