"""The banner over the stage strip: what ``b`` would do, what runs now, and at the end an
unmistakable verdict. Remote text (commit subjects, errors) enters as plain strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from textual.content import Content

from relconsole.events import BuildFinished, CommitResolved, RunResult
from relconsole.text import printable
from relconsole.ui import clock
from relconsole.ui.note import Note


class BuildBanner(Note):
    DEFAULT_CSS = """
    BuildBanner {
        height: auto;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        &.-running { background: $warning 20%; color: $text; }
        &.-locked { background: $error 25%; color: $text; }
        &.-ok { background: $success; color: $text; text-style: bold;
                text-wrap: nowrap; text-overflow: ellipsis; }
        &.-failed { background: $error; color: $text; text-style: bold; }
        &.-cancelled { background: $warning; color: $text; text-style: bold; }
    }
    """

    shown: tuple[str, str] = ("", "")  # kind and plain text on screen

    def show(self, kind: str, content: Content) -> None:
        old_kind, old_text = self.shown
        text = content.plain
        if (kind, text) == self.shown:
            return
        for name in ("idle", "locked", "running", "ok", "failed", "cancelled"):
            self.set_class(name == kind, f"-{name}")
        self.shown = (kind, text)
        # A layout repaints the whole screen: skip it when the text keeps its shape (the
        # spinner turning), since it then wraps the same way at the same height.
        self.update(content, layout=kind != old_kind or not same_shape(old_text, text))


def same_shape(old: str, new: str) -> bool:
    """Same length, with spaces and line breaks at the same places."""
    return len(old) == len(new) and all(
        (a in " \n") == (b in " \n") for a, b in zip(old, new, strict=True)
    )


def idle_text(
    service: str, branch: str, hosts: Sequence[str], lock: Optional[str], read_only: bool = False
) -> tuple[str, Content]:
    """Before the first run of this session: what ``b`` would do."""
    if read_only:
        return "idle", Content.assemble(
            "Read-only: nothing can be changed from this console. ",
            ("P", "bold"),
            " shows what a build of ",
            (service, "bold"),
            f" ({branch}) would do.",
        )
    parts: list = [
        "Ready. ",
        ("b", "bold"),
        " builds ",
        (service, "bold"),
        f" ({branch}) on ",
        ", ".join(hosts) or "no hosts",
        ".",
    ]
    if lock:
        parts += ["\n", ("🔒 locked by ", "bold"), printable(lock), " — a build would be refused."]
    return ("locked" if lock else "idle"), Content.assemble(*parts)


def running_text(
    action: str,
    service: str,
    branch: str,
    hosts: Sequence[str],
    commit: Optional[CommitResolved],
    command: Optional[str] = None,
) -> Content:
    if action == "run":
        return Content.assemble(
            f"{clock.spinner()} Running ",
            (printable(command or "…"), "bold"),
            " on ",
            (service, "bold"),
            f" → {', '.join(hosts)}",
        )
    doing = "Rolling back" if action == "rollback" else "Building"
    parts: list = [(f"{clock.spinner()} {doing} ", ""), (service, "bold")]
    if commit:
        parts += [" ", (commit.sha[:7], "bold"), " ", printable(commit.subject)]
    on_branch = f" ({branch})" if action == "build" else ""
    parts += [f"{on_branch} → {', '.join(hosts)}"]
    return Content.assemble(*parts)


def verdict(
    event: BuildFinished,
    commit: Optional[CommitResolved],
    stage: Optional[str],
    action: str = "build",
    command: Optional[str] = None,
) -> tuple[str, Content]:
    """The banner's class and text for a finished build, rollback or command."""
    took = clock.seconds_text(event.seconds)
    if action == "run":
        return run_verdict(event, command or "", took)
    sha = event.sha[:12] if event.sha else ""
    rollback = action == "rollback"
    if event.ok:
        if rollback:
            return "ok", Content.assemble(
                ("↶ ROLLED BACK ", "bold"),
                (event.service, "bold"),
                " to ",
                (sha, "bold"),
                f" in {took}",
                f"\nrelease {event.release}",
            )
        subject = f" · “{printable(commit.subject)}”" if commit else ""
        return "ok", Content.assemble(
            ("✔ DEPLOYED ", "bold"),
            (event.service, "bold"),
            " ",
            (sha, "bold"),
            f" in {took}",
            f"\nrelease {event.release}{subject}",
        )
    what = "ROLLBACK" if rollback else "BUILD"
    if event.result is RunResult.LOCKED:
        return "failed", Content.assemble(
            (f"🔒 {what} REFUSED ", "bold"),
            printable(event.error or ""),
            " (here: ctrl+p → ",
            (f"Unlock {event.service}", "bold"),
            ")",
        )
    if event.cancelled:
        where = f" during {stage}" if stage else ""
        return "cancelled", Content.assemble(
            (f"■ {what} CANCELLED ", "bold"),
            (event.service, "bold"),
            f" {sha}".rstrip(),
            f"{where} after {took}",
        )
    return "failed", Content.assemble(
        (f"✘ {what} FAILED ", "bold"),
        (event.service, "bold"),
        f" {sha}".rstrip(),
        f" after {took}\n",
        printable(event.error or "unknown error"),
    )


def run_verdict(event: BuildFinished, command: str, took: str) -> tuple[str, Content]:
    """How a command on every host ended: every host exited 0, or which did not."""
    shown = printable(command)
    if event.ok:
        return "ok", Content.assemble(
            ("✔ RAN ", "bold"),
            (shown, "bold"),
            f" on {event.service}: every host exited 0 in {took}",
        )
    if event.cancelled:
        return "cancelled", Content.assemble(
            ("■ CANCELLED ", "bold"), (shown, "bold"), f" after {took}: the commands were killed"
        )
    return "failed", Content.assemble(
        ("✘ FAILED ", "bold"), (shown, "bold"), "\n", printable(event.error or "unknown error")
    )
