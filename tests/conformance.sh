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

# Judge the results. Every result must be SUCCESS, except the whole-extension PATCH checks
# on the read-only Retrac extension. scim2-tester 0.5.2 (with scim2-models 0.12.3) gives the
# extension-as-a-whole path the default mutability readWrite (a ResourceType's
# schemaExtensions can only say `required`), so check_add/replace/remove_attribute all PATCH
# `urn:...:Member` itself. Every attribute in it is readOnly, so the value it sends holds none
# (`{"schemas": [URN]}`), and it then expects the extension to hold no value (add, replace) or
# to be gone (remove). A member always has a role, and `locations` and `role` are readOnly
# (RFC 7643 §2.2), so the server shows the owner's values unchanged after the no-op add and
# replace, and answers the remove with 400 mutability (RFC 7644 §3.5.2). No stateless, honest
# representation passes all three: add/replace need the extension shown without a role on a
# fresh member; remove needs it absent on that same owner state. tests/scim_router.rs
# (whole_retrac_extension_patches_...) pins the server's answers. Those three results are
# listed as KNOWN and counted apart; anything else that is not SUCCESS fails the run.
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
EXT = "urn:retrac:params:scim:schemas:extension:2.0:Member"
KNOWN_CHECKS = {"check_add_attribute", "check_remove_attribute", "check_replace_attribute"}
ok, known, bad = 0, [], []
for status, check, detail in blocks:
    if status == "SUCCESS":
        ok += 1
    elif check in KNOWN_CHECKS and any(EXT in d for d in detail):
        known.append(check)
    else:
        bad.append((status, check, detail[:3]))
print()
if not blocks:
    print("conformance: FAILED (no results)")
    sys.exit(1)
for check in known:
    print(f"conformance: KNOWN (not SUCCESS): {check} on the read-only {EXT}")
for status, check, detail in bad:
    print(f"conformance: {status} {check}: {' / '.join(d.strip() for d in detail)}")
print(f"conformance: {ok} SUCCESS, {len(known)} known read-only-extension results, {len(bad)} other failures, of {len(blocks)}")
sys.exit(1 if bad or len(known) > 3 else 0)
PY
