"""Where the config file is: ``--config PATH``, else ``$RELCONSOLE_CONFIG``, else
``./config.toml``.

Apart from :mod:`relconsole.config` because shell completion asks it on every TAB:
the standard library's ``os`` only, nothing of the loader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "RELCONSOLE_CONFIG"
DEFAULT_FILENAME = "config.toml"


def find_config_path(
    cli_value: str | None,
    environ: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
) -> Path:
    """``--config PATH``, else ``$RELCONSOLE_CONFIG``, else ``./config.toml``.

    Empty values count as unset; ``~`` is expanded; the result is absolute
    (relative values are taken relative to ``cwd``, default the current directory).
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    value = cli_value or environ.get(ENV_VAR) or DEFAULT_FILENAME
    try:
        value = os.path.expanduser(value)
    except (RuntimeError, KeyError, OSError):  # pragma: no cover
        pass
    return Path(os.path.normpath(base / value))
