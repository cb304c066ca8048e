"""A plan (:mod:`relconsole.plan`) as lines of text: what ``--plan`` prints and what the
console's plan view colours. Every string from elsewhere (subjects, authors, lock
holders, diffs) is made printable; the plan's own facts are not re-judged here."""

from __future__ import annotations

from relconsole.plan import FileChange, Plan, ReleaseGroup
from relconsole.text import format_table, printable


def plan_text(plan: Plan) -> str:
    """The whole plan, sections separated by blank lines."""
    sections = [_head(plan), _hosts(plan)]
    sections += [_group(plan, g) for g in plan.groups]
    sections += [_files(plan.files), _programs(plan), _lock(plan)]
    if plan.warnings or plan.problems:
        sections.append(
            "\n".join(
                [f"the build would fail: {printable(w)}" for w in plan.warnings]
                + [f"NOT READ: {printable(p)}" for p in plan.problems]
            )
        )
    return "\n\n".join(s for s in sections if s)


def _head(plan: Plan) -> str:
    if plan.sha is None:
        return f"==> plan: build {plan.service} (branch {plan.branch}): the branch tip is unknown"
    author = f" ({printable(plan.author or '')})" if plan.author else ""
    return (
        f"==> plan: build {plan.service} (branch {plan.branch}) at {plan.sha[:12]} "
        f'"{printable(plan.subject or "")}"{author}'
    )


def _hosts(plan: Plan) -> str:
    rows = [["host", "runs release", "sha", ""]]
    usual = max(plan.groups, key=lambda g: len(g.hosts)) if plan.groups else None
    for h in plan.hosts:
        if h.error:
            rows.append([h.host, "-", "-", f"NOT READ: {printable(h.error)}"])
            continue
        odd = usual is not None and len(plan.groups) > 1 and h.host not in usual.hosts
        rows.append(
            [
                h.host,
                h.release or "nothing deployed",
                (h.sha or "")[:12],
                "DIFFERS from the others" if odd else "",
            ]
        )
    return "hosts:\n" + _indent(format_table(rows))


def _group(plan: Plan, g: ReleaseGroup) -> str:
    who = ", ".join(g.hosts)
    runs = f"{g.release or 'nothing'}" + (f" ({g.sha[:12]})" if g.sha else "")
    lines = [f"{who} run{'s' if len(g.hosts) == 1 else ''} {runs}:"]
    if g.note:
        lines.append(f"  {printable(g.note)}")
    if g.commits:
        title = "latest commits" if g.sha is None else f"{len(g.commits)} commit(s) to deploy"
        lines.append(f"  {title}:")
        lines += [f"    {c.sha[:12]}  {c.subject}  ({c.author})" for c in g.commits]
    if g.removed:
        lines.append(f"  {len(g.removed)} commit(s) they run that this build does not have:")
        lines += [f"    {c.sha[:12]}  {c.subject}  ({c.author})" for c in g.removed]
    if g.diffstat.strip():
        lines.append("  git diff --stat:")
        lines += [f"   {printable(line)}" for line in g.diffstat.splitlines()]
    return "\n".join(lines)


def _files(files: tuple[FileChange, ...]) -> str:
    if not files:
        return "files: none configured"
    lines = ["files (installed now → installed by this build):"]
    for f in files:
        where = ", ".join(f.hosts) or "no host read"
        target = f"{f.dest.rstrip('/')}/{printable(f.name)}"
        lines.append(f"  {target}: {f.change} on {where}")
        lines += [f"    {line}" for line in f.diff.splitlines()]
    return "\n".join(lines)


def _programs(plan: Plan) -> str:
    if not plan.programs:
        return "supervisor: no programs configured (supervisorctl update only)"
    lines = ["supervisor:"]
    lines += [f"  {p.name}: {p.action}" for p in plan.programs]
    return "\n".join(lines)


def _lock(plan: Plan) -> str:
    if plan.lock is None:
        return "deploy lock: free"
    return f"deploy lock: HELD by {printable(plan.lock)}"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
