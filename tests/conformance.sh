#!/usr/bin/env bash
# SCIM conformance: runs scim2-tester 0.5.2 (through scim2-cli 0.6.0 from PyPI, in a
# virtualenv under target/) against `retrac-sync run` on a free loopback port, with a fresh
# store and a fresh token. Fails unless every result line is SUCCESS.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/scim2-venv
if ! "$VENV/bin/pip" show scim2-cli 2>/dev/null | grep -qx 'Version: 0.6.0'; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'scim2-cli==0.6.0'
fi

cargo build --quiet --bin retrac-sync
BIN=target/debug/retrac-sync

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/config.toml" <<TOML
[store]
path = "$WORK/store"
[scim]
listen = "127.0.0.1:0"
[admin]
socket = "$WORK/admin.sock"
[metrics]
listen = "127.0.0.1:0"
[console]
listen = ""
[log]
level = "warn,retrac_sync=info"
TOML

TOKEN=$("$BIN" --config "$WORK/config.toml" token create --label conformance --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')

NO_COLOR=1 "$BIN" --config "$WORK/config.toml" run 2> "$WORK/server.log" &
SERVER_PID=$!

# The listener binds port 0; its real address is in the daemon's start line (scim=ADDR).
ADDR=
for _ in $(seq 1 100); do
    ADDR=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -o 'scim=127\.0\.0\.1:[0-9]*' | head -1 | cut -d= -f2 || true)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; echo "conformance: the server died" >&2; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$WORK/server.log"; echo "conformance: the server did not start" >&2; exit 1; }

set +e
"$VENV/bin/scim2" --url "http://$ADDR/scim/v2" -h "Authorization: Bearer $TOKEN" test > "$WORK/results.txt" 2>&1
set -e
cat "$WORK/results.txt"

# Judge the results: every result must be SUCCESS. There is no list of allowed failures.
python3 - "$WORK/results.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read().splitlines()
blocks, cur = [], None
for line in text:
    m = re.match(r"^([A-Z]+) (\S+)", line)
    if m:
        cur = [m.group(1), m.group(2), []]
        blocks.append(cur)
    elif cur is not None:
        cur[2].append(line)
print()
if not blocks:
    print("conformance: FAILED (no results)")
    sys.exit(1)
ok = sum(1 for status, _, _ in blocks if status == "SUCCESS")
bad = [(status, check, detail[:3]) for status, check, detail in blocks if status != "SUCCESS"]
for status, check, detail in bad:
    print(f"conformance: {status} {check}: {' / '.join(d.strip() for d in detail)}")
print(f"conformance: {ok} SUCCESS, {len(bad)} other, of {len(blocks)}")
sys.exit(1 if bad else 0)
PY
