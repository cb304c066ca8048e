"""Shell completion for bash and zsh: ``relconsole --completion bash|zsh``.

A generated script rather than argcomplete: no new dependency, and flags complete
from the script alone (listed from the argparse parser when it is generated), with
no Python started. Only names — services and hosts, which change with the config —
ask relconsole, through the hidden ``--complete-names KIND``: that path reads the
TOML with :mod:`tomllib` and imports nothing of the engine (a TAB costs one
interpreter start). zsh runs the same function through its ``bashcompinit``.

Which names an option takes follows its metavar, so a flag added later with
``metavar="SVC"`` or ``"HOST"`` completes without touching this module.
"""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from typing import Any, Optional

from relconsole.config_path import find_config_path

SHELLS = ("bash", "zsh")
#: Names handed to the shell: what the config accepts for service and host names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

#: metavar → what completes there.
SERVICE_METAVARS = {"SVC"}
HOST_METAVARS = {"HOST"}
HOST_LIST_METAVARS = {"H1,H2"}
FILE_METAVARS = {"PATH"}


# --------------------------------------------------------------------------- names


def complete_names(kind: str, config: Optional[str]) -> list[str]:
    """``services``, ``hosts`` or ``hosts-of:SVC`` from the config the command line
    would read; [] when it cannot be read (a TAB never shows an error)."""
    try:
        doc = tomllib.loads(find_config_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    services = _table(doc.get("services"))
    hosts = _table(doc.get("hosts"))
    if kind == "services":
        names: list[Any] = list(services)
    elif kind == "hosts":
        names = list(hosts)
    elif kind.startswith("hosts-of:"):
        service = _table(services.get(kind.removeprefix("hosts-of:")))
        listed = service.get("hosts")
        names = listed if isinstance(listed, list) else list(hosts)
    else:
        return []
    return [n for n in names if isinstance(n, str) and _NAME.fullmatch(n)]


def _table(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- scripts


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]


def _case(patterns: list[str], body: str) -> str:
    return f"        {'|'.join(patterns)}) {body} ;;" if patterns else ""


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r} (only {', '.join(SHELLS)})")
    actions = _options(parser)
    flags = " ".join(s for a in actions for s in a.option_strings if s.startswith("--"))
    by_kind: dict[str, list[str]] = {
        "services": [],
        "optional services": [],
        "hosts": [],
        "host list": [],
        "files": [],
        "free": [],
    }
    choices: list[str] = []
    for a in actions:
        if a.nargs == 0:
            continue
        options = [s for s in a.option_strings if s.startswith("--")]
        metavar = a.metavar if isinstance(a.metavar, str) else None
        if a.choices:
            words = " ".join(shlex.quote(str(c)) for c in a.choices)
            choices.append(_case(options, f'COMPREPLY=($(compgen -W "{words}" -- "$cur")); return'))
        elif metavar in SERVICE_METAVARS:
            by_kind["optional services" if a.nargs == "?" else "services"] += options
        elif metavar in HOST_METAVARS:
            by_kind["hosts"] += options
        elif metavar in HOST_LIST_METAVARS:
            by_kind["host list"] += options
        elif metavar in FILE_METAVARS:
            by_kind["files"] += options
        else:
            by_kind["free"] += options
    cases = "\n".join(
        line
        for line in [
            _case(by_kind["services"], "_relconsole_names services; return"),
            # An optional SVC: the names, and the flags once a "-" is typed.
            _case(
                by_kind["optional services"],
                "[[ $cur == -* ]] || { _relconsole_names services; return; }",
            ),
            _case(by_kind["hosts"], "_relconsole_names hosts; return"),
            _case(
                by_kind["host list"],
                '_relconsole_names "${service:+hosts-of:$service}"; return',
            ),
            _case(
                by_kind["files"],
                'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return',
            ),
            *choices,
            _case(by_kind["free"], "return"),
        ]
        if line
    )
    body = _BASH.format(flags=flags, cases=cases)
    if shell == "zsh":
        return _ZSH_HEAD + body
    return _BASH_HEAD + body


_BASH_HEAD = """\
# relconsole completion for bash, generated by `relconsole --completion bash`.
# Enable it in ~/.bashrc:  eval "$(relconsole --completion bash)"
"""

_ZSH_HEAD = """\
# relconsole completion for zsh, generated by `relconsole --completion zsh`.
# Enable it in ~/.zshrc, after compinit:  eval "$(relconsole --completion zsh)"
# zsh runs the bash function below through its bashcompinit.
autoload -U +X bashcompinit && bashcompinit
"""

# Kept to what bash and zsh's bashcompinit (which runs it in sh emulation) both do.
_BASH = """\
_relconsole_flags="{flags}"

# Names from the config the command line reads: $1 is services, hosts or
# hosts-of:SVC. In a comma list (--hosts a,b) only the part after the last comma is
# completed, and names already listed are not offered again.
_relconsole_names() {{
    local IFS=$'\n' head="" name
    local -a names=() from=()
    [[ -n $config ]] && from=(--config "$config")
    [[ $cur == *,* ]] && head=${{cur%,*}},
    for name in $(relconsole --complete-names "${{1:-hosts}}" "${{from[@]}}" 2>/dev/null); do
        [[ ,$head == *,$name,* ]] || names+=("$name")
    done
    COMPREPLY=($(compgen -P "$head" -W "${{names[*]}}" -- "${{cur#"$head"}}"))
}}

_relconsole() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local i word next config="" service=""
    # bash splits --option=value at "=": read it as --option value.
    [[ $cur == "=" ]] && cur=""
    [[ $prev == "=" ]] && prev=${{COMP_WORDS[COMP_CWORD-2]}}
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        next=${{COMP_WORDS[i+1]}}
        [[ $next == "=" ]] && next=${{COMP_WORDS[i+2]}}
        case $word in
            --config) config=$next ;;
            --build) service=$next ;;
        esac
    done
    case $prev in
{cases}
    esac
    COMPREPLY=($(compgen -W "$_relconsole_flags" -- "$cur"))
}}

complete -F _relconsole relconsole
"""
