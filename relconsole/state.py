"""relconsole's own folders on this machine (state_dir: workspaces, locks, history).

They may hold secrets (a check's output, a workspace), so whatever relconsole creates
there is readable by this user only. When the folder cannot be made or written, the
error names the path and what to do, instead of a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path

from relconsole.errors import RelconsoleError

#: What to do when state_dir (or a file in it) cannot be written.
STATE_DIR_REMEDY = "make it writable for this user, or set [settings] state_dir to a folder that is"

#: Errors of this machine that state_dir's permissions cause: runs write on this
#: machine only under state_dir (workspaces, locks, history).
_PERMISSION_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS)


class StateDirError(RelconsoleError):
    """A folder of state_dir cannot be made or written."""


def describe_os_error(exc: OSError) -> str:
    """An OSError of this machine in one line: the file, what went wrong, and for a
    permission error, what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    remedy = f"; {STATE_DIR_REMEDY}" if exc.errno in _PERMISSION_ERRORS else ""
    return f"{where}{exc.strerror or exc or type(exc).__name__} (on this machine){remedy}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by this user only; return it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(
            f"{path} is a file, not a folder: move it away, or set [settings] state_dir "
            "to another folder"
        ) from None
    except OSError as exc:
        raise StateDirError(
            f"cannot create {path}: {exc.strerror or exc}; {STATE_DIR_REMEDY}"
        ) from None
    if not path.is_dir():
        raise StateDirError(f"{path} is not a folder: set [settings] state_dir to one")
    return path
