"""What a git repository already says about deploying it (``relconsole --init``).

Read-only and local: ``git`` answers the origin, the branch and the tracked files
(what a build would deploy; untracked and ignored files are not looked at). From the
files come the supervisor program configs (a ``[program:NAME]`` section) and guesses
at the checks (a pytest or unittest suite, ruff, flake8, mypy, a Makefile ``test``
target). Every guess carries the reason it was made, so the starter config can say it.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from relconsole.config import validate_branch, validate_name, validate_program
from relconsole.errors import RelconsoleError

#: Files bigger than this are not read for sections or settings (data, not config).
MAX_READ = 256 * 1024


class NotARepository(RelconsoleError):
    """``--init`` was run outside a git work tree."""


@dataclass(frozen=True)
class ProgramFile:
    """A supervisor config in the repository that defines programs."""

    path: str  # relative to the repository root, "/"-separated
    programs: tuple[str, ...]  # as supervisorctl names them: "web", "workers:*"
    #: Prefixes of ``<prefix>/current`` its command= or directory= lines run from.
    run_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckGuess:
    name: str
    run: str
    why: str  # "a unittest suite (tests/test_app.py)"


@dataclass
class RepoFacts:
    root: Path  # the work tree's top folder
    origin: Optional[str]  # remote "origin"'s URL, None without one
    branch: Optional[str]  # the checked-out branch, None when detached or not valid
    program_files: list[ProgramFile] = field(default_factory=list)
    #: Files with [program:] sections left out, each with the reason.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    checks: list[CheckGuess] = field(default_factory=list)
    #: Guesses not taken because another covers the same ground (shown commented out).
    alternatives: list[CheckGuess] = field(default_factory=list)
    #: ``files`` sources uploading the program configs (globs where a folder allows).
    uploads: list[str] = field(default_factory=list)

    @property
    def programs(self) -> list[str]:
        out: list[str] = []
        for f in self.program_files:
            out += [p for p in f.programs if p not in out]
        return out

    @property
    def run_from(self) -> Optional[str]:
        """The one remote base folder every program config runs from, if they agree."""
        found = {p for f in self.program_files for p in f.run_from}
        return found.pop() if len(found) == 1 else None

    def suggested_name(self) -> str:
        """The origin's last path part (``acme/api.git`` → ``api``), else the folder's."""
        raw = self.origin.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] if self.origin else ""
        for candidate in (raw.removesuffix(".git"), self.root.name):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", candidate).strip("-.").lower()
            try:
                return validate_name(name)
            except ValueError:
                continue
        return "app"


def _git(root: Path, *args: str) -> Optional[str]:
    """git's answer (stripped), or None when it fails."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def scan_repository(where: Path) -> RepoFacts:
    """The facts of the git work tree containing ``where``. Raises NotARepository."""
    top = _git(where, "rev-parse", "--show-toplevel")
    if not top:
        raise NotARepository(f"{where} is not inside a git work tree: run --init in one")
    root = Path(top)
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    try:
        branch = validate_branch(branch) if branch else None
    except ValueError:
        branch = None
    facts = RepoFacts(root=root, origin=_git(root, "remote", "get-url", "origin"), branch=branch)
    listing = _git(root, "ls-files", "-z", "--cached") or ""
    files = sorted(name for name in listing.split("\0") if name)
    _find_programs(root, files, facts)
    facts.uploads = upload_globs(facts.program_files, files)
    _guess_checks(root, files, facts)
    return facts


def _read(root: Path, name: str) -> str:
    path = root / name
    try:
        if not path.is_file() or path.stat().st_size > MAX_READ:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- programs

_SECTION = re.compile(r"^\s*\[([^\]\n]+)\]\s*$", re.MULTILINE)
_RUN_FROM = re.compile(r"(/[^\s'\":;]+?)/current(?=[/\s'\":;]|$)")


def _sections(text: str) -> list[tuple[str, str]]:
    """(section name, body) pairs of an ini-like text."""
    marks = list(_SECTION.finditer(text))
    return [
        (m[1].strip(), text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)])
        for i, m in enumerate(marks)
    ]


def _setting(body: str, key: str) -> Optional[str]:
    found = re.search(rf"^\s*{key}\s*=\s*(.*?)\s*$", body, re.MULTILINE)
    return found[1] if found else None


def _find_programs(root: Path, files: Iterable[str], facts: RepoFacts) -> None:
    for name in files:
        text = _read(root, name)
        if "[program:" not in text:
            continue
        sections = _sections(text)
        if any(section == "supervisord" for section, _ in sections):
            facts.skipped.append((name, "a whole supervisord config ([supervisord] section)"))
            continue
        programs = [s.split(":", 1)[1].strip() for s, _ in sections if s.startswith("program:")]
        grouped: dict[str, list[str]] = {}
        for section, body in sections:
            if section.startswith("group:"):
                members = _setting(body, "programs") or ""
                grouped[section.split(":", 1)[1].strip()] = [
                    m.strip() for m in members.split(",") if m.strip()
                ]
        in_groups = {m for members in grouped.values() for m in members}
        names = [f"{g}:*" for g in grouped] + [p for p in programs if p not in in_groups]
        valid = []
        for program in names:
            try:
                valid.append(validate_program(program))
            except ValueError:
                facts.skipped.append((name, f"program {program!r}: not a name relconsole takes"))
        if not valid:
            continue
        run_from = sorted(
            {
                m[1]
                for section, body in sections
                if section.startswith("program:")
                for key in ("command", "directory")
                for m in _RUN_FROM.finditer(_setting(body, key) or "")
            }
        )
        facts.program_files.append(ProgramFile(name, tuple(valid), tuple(run_from)))


def upload_globs(files: list[ProgramFile], tracked: Iterable[str]) -> list[str]:
    """``src`` globs for the program configs: ``dir/*.conf`` where every tracked
    ``.conf`` file of that folder is one of them, else the files one by one."""
    wanted = [f.path for f in files]
    tracked = list(tracked)
    out: list[str] = []
    for folder in dict.fromkeys(posixpath.dirname(p) for p in wanted):
        mine = [p for p in wanted if posixpath.dirname(p) == folder]
        confs = [p for p in tracked if posixpath.dirname(p) == folder and p.endswith(".conf")]
        if len(mine) > 1 and sorted(mine) == sorted(confs):
            out.append(posixpath.join(folder, "*.conf"))
        else:
            out += mine
    return out


# --------------------------------------------------------------------------- checks

_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
_MAKE_TEST = re.compile(r"^test\s*:(?!=)", re.MULTILINE)


def _has(root: Path, files: list[str], name: str, marker: str | None = None) -> bool:
    """A tracked file called ``name`` (anywhere for a bare name), holding ``marker``."""
    return any(
        (f == name or ("/" not in name and f.endswith("/" + name)))
        and (marker is None or marker in _read(root, f))
        for f in files
    )


def _unittest_command(tests: list[str]) -> str:
    """``python3 -m unittest discover`` aimed at the folder holding the tests."""
    tops = {t.split("/", 1)[0] if "/" in t else "." for t in tests}
    command = "python3 -m unittest discover"
    if len(tops) == 1 and (top := tops.pop()) != ".":
        command += f" -s {top}"
    if all(posixpath.basename(t).endswith("_test.py") for t in tests):
        command += " -p '*_test.py'"
    return command


def _guess_checks(root: Path, files: list[str], facts: RepoFacts) -> None:
    tests = [f for f in files if _TEST_FILE.search(f)]
    suite: Optional[CheckGuess] = None
    pytest_marks = [
        ("pytest.ini", None),
        ("conftest.py", None),
        ("pyproject.toml", "[tool.pytest"),
        ("setup.cfg", "[tool:pytest]"),
        ("tox.ini", "[pytest]"),
    ]
    marked = next((name for name, mark in pytest_marks if _has(root, files, name, mark)), None)
    texts = {t: _read(root, t) for t in tests}
    importing = next((t for t in tests if re.search(r"^\s*import pytest", texts[t], re.M)), None)
    unittest = [t for t in tests if re.search(r"^\s*(import|from) unittest", texts[t], re.M)]
    if marked or importing:
        suite = CheckGuess(
            "tests", "python3 -m pytest -q", f"a pytest suite ({marked or importing})"
        )
    elif unittest:
        shown = unittest[0] + (f" and {len(unittest) - 1} more" if len(unittest) > 1 else "")
        suite = CheckGuess("tests", _unittest_command(unittest), f"a unittest suite ({shown})")
    makefile = next((m for m in ("Makefile", "makefile", "GNUmakefile") if m in files), None)
    if makefile and _MAKE_TEST.search(_read(root, makefile)):
        # The team's own entry point wins; the suite it probably runs is shown aside.
        facts.checks.append(CheckGuess("tests", "make test", f"{makefile} has a test target"))
        if suite is not None:
            facts.alternatives.append(suite)
    elif suite is not None:
        facts.checks.append(suite)
    for name, run, marks in (
        ("ruff", "ruff check .", [("ruff.toml", None), (".ruff.toml", None),
                                  ("pyproject.toml", "[tool.ruff")]),
        ("flake8", "flake8", [(".flake8", None), ("setup.cfg", "[flake8]"),
                              ("tox.ini", "[flake8]")]),
        ("mypy", "mypy", [("mypy.ini", None), (".mypy.ini", None),
                          ("pyproject.toml", "[tool.mypy"), ("setup.cfg", "[mypy]")]),
    ):  # fmt: skip
        found = next((f for f, mark in marks if f in files and _has(root, files, f, mark)), None)
        if found:
            facts.checks.append(CheckGuess(name, run, f"{name} is configured in {found}"))
