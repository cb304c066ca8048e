#!/usr/bin/env bash
# Prove that the fast tier (pytest -m "not bed") needs neither sshd nor root.
#
#   bash tests/prove_fast_tier.sh [pytest args]      (run as root: it sets up the cage)
#
# pytest runs in a private mount namespace where /usr/sbin/sshd, /usr/bin/ssh and
# /usr/bin/sudo are tripwires (a call is logged and fails), with every capability
# dropped (root's uid, none of root's powers: no mount, no namespaces, no reading
# other users' files) and no sbin directory in PATH. Meanwhile a watcher looks for any
# sshd process under this run. It fails if pytest fails, a tripwire fired, or an sshd
# appeared. `bash tests/prove_fast_tier.sh -m bed -k distinct_loopback` shows it can:
# a bed test in the cage errors and fires the sshd tripwire.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "run as root (to build the cage; the tests then run without root's powers)" >&2; exit 2; }
python=$(python3 -c 'import sys; print(sys.executable)')
work=$(mktemp -d /tmp/prove-fast-tier.XXXXXX)
log="$work/tripwire.log"
: >"$log"
chmod 0666 "$log"
cat >"$work/tripwire" <<EOF
#!/bin/sh
echo "\$0 \$*" >>"$log"
exit 97
EOF
chmod 0755 "$work/tripwire"

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-m "not bed")
pytest_cmd=$(printf '%q ' env PATH=/usr/local/bin:/usr/bin:/bin PYTHONPATH="$PWD" \
    "$python" -m pytest -q -p no:cacheprovider --basetemp="$work/tmp" "${args[@]}")
cage="set -e
for tool in /usr/sbin/sshd /usr/bin/ssh /usr/bin/sudo; do mount --bind '$work/tripwire' \"\$tool\"; done
exec setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- $pytest_cmd"

unshare --mount --propagation private sh -c "$cage" &
pid=$!
# Any sshd among the run's descendants (whatever binary it came from), every 0.1 s.
"$python" - "$pid" >"$work/watcher.log" <<'PY' &
import os, sys, time
root = int(sys.argv[1])
def tree():
    parent, comm = {}, {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        comm[int(p)] = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent[int(p)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parent, comm
seen = set()
while os.path.exists(f"/proc/{root}"):
    parent, comm = tree()
    for p, name in comm.items():
        q = p
        while q > 1 and q != root:
            q = parent.get(q, 0)
        if q == root and name == "sshd" and p not in seen:
            seen.add(p)
            print(p, name, flush=True)
    time.sleep(0.1)
PY
watcher=$!
status=0
wait "$pid" || status=$?
wait "$watcher" || true

fired=$(cat "$log")
sshds=$(cat "$work/watcher.log")
rm -rf "$work"
echo "pytest exit status: $status"
echo "tripwire calls: ${fired:-none}"
echo "sshd processes seen under the run: ${sshds:-none}"
[ "$status" = 0 ] && [ -z "$fired" ] && [ -z "$sshds" ]
