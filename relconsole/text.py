"""Text from elsewhere made safe to show, and plain tables.

Program output, commit subjects, lock holders and host answers come from places
relconsole does not control: before any of it reaches a terminal, its control
sequences are removed (a hostile program could otherwise move the cursor, retitle the
window or write the clipboard). Front ends also never read it as markup.
"""

from __future__ import annotations

import re

# CSI/OSC escape sequences and the other C0 controls (tab is kept).
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?"
    r"|[\x00-\x08\x0b-\x1f\x7f]"
)


def printable(text: str) -> str:
    """``text`` without terminal control sequences."""
    return _CONTROL.sub("", text)


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
