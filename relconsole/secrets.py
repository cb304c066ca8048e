"""Secrets: referenced by the config, never written in it, and masked everywhere.

A reference is ``env:NAME`` (an environment variable of the relconsole process) or
``file:PATH`` (the file's content, trailing newline removed). Values are read when
a build starts, handed to checks as environment variables, and replaced by
``****`` in every event before any front end, JSON line or history row sees it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

from relconsole.errors import RelconsoleError
from relconsole.events import Event, Sink

MASK = "****"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretError(RelconsoleError, ValueError):
    pass


def check_reference(ref: str, base_dir: Path) -> str:
    """Validate a reference at config load; ``file:`` paths become absolute."""
    kind, sep, rest = ref.partition(":")
    if not sep or kind not in ("env", "file") or not rest:
        raise ValueError(
            "must be a reference, env:NAME or file:PATH — secret values never "
            "go in the config itself"
        )
    if kind == "env":
        if not ENV_NAME.match(rest):
            raise ValueError(f"env:{rest} is not an environment variable name")
        return ref
    path = Path(os.path.expanduser(rest))
    return f"file:{path if path.is_absolute() else (base_dir / path).resolve()}"


def resolve(ref: str) -> str:
    """The secret's value. Raises SecretError saying what is missing (never the value)."""
    kind, _, rest = ref.partition(":")
    if kind == "env":
        if rest not in os.environ:
            raise SecretError(f"environment variable {rest} is not set")
        return os.environ[rest]
    try:
        return Path(rest).read_text().rstrip("\n")
    except OSError as exc:
        raise SecretError(f"cannot read secret file {rest}: {exc.strerror or exc}") from None


#: Lines of a multi-line secret shorter than this are not masked on their own: a
#: "}" or "-----" would blank every other occurrence in the output.
MIN_LINE = 4


def _forms(value: str) -> list[str]:
    """``value`` as it may appear in output: itself, shell-quoted, JSON-escaped, and,
    for a multi-line value (a key, a certificate), each of its lines — output is
    split into lines before it is masked, so the whole never appears in one."""
    forms = [value, shlex.quote(value), json.dumps(value)[1:-1]]
    if "\n" in value:
        forms += [line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE]
    return forms


class Masker:
    """Replaces every known secret value in the string fields of events."""

    def __init__(self, values: Iterable[str] = ()):
        self.values: list[str] = []
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        forms = [form for value in values for form in _forms(value)]
        # Longest first, so a secret containing another is masked whole.
        self.values = sorted({v for v in [*self.values, *forms] if v}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def event(self, event: Event) -> Event:
        if not self.values:
            return event
        # Plain strings only: a Stage (a str enum) is the engine's own word, not data.
        changes = {
            f.name: self.mask(getattr(event, f.name))
            for f in dataclasses.fields(event)
            if type(getattr(event, f.name)) is str
        }
        return dataclasses.replace(event, **changes)  # type: ignore[arg-type]

    def wrap(self, sink: Sink) -> Sink:
        return lambda event: sink(self.event(event))
