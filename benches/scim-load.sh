#!/usr/bin/env bash
# SCIM load bench: seeds 100,000 members (through provision::apply_batch), runs the release
# binary on 127.0.0.1 and measures with wrk:
#   - GET /Users?filter=userName eq "..." at 32 connections (target >= 20,000 req/s, p99 < 10 ms)
#   - POST /Users at 16 connections, each write durable before its 201 (target >= 8,000/s)
#   - PATCH active at 16 connections, durable before its 200 (target >= 5,000/s)
#   - unfiltered paging: startIndex=1 vs startIndex=99,901 (count=100), median of 21
#   - a filter no index serves (a full scan), for information
#   - peak RSS (VmHWM) of the server (target <= 300 MB)
# Usage: benches/scim-load.sh [MEMBERS] [SECONDS]
# Each run also prints the server's CPU time per request (from /proc, user + system).
# PERF_POST=FILE (PERF_GET=FILE) also records a CPU profile of the server (perf, 199 Hz,
# call graphs from DWARF) during the POST (filtered GET) run into FILE; read it with
# `perf report -i FILE --children --stdio`.
set -euo pipefail
cd "$(dirname "$0")/.."

MEMBERS=${1:-100000}
SECONDS_PER_RUN=${2:-15}
CONNECTIONS=32
# Writes: 16 connections, as the write figures in docs/development.md ("Writes") are taken.
WRITE_CONNECTIONS=16
THREADS=2

if ! command -v wrk >/dev/null; then
    echo "wrk is missing; installing it (apt-get install wrk)" >&2
    if ! { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1; then
        echo "cannot install wrk: run 'apt-get install wrk' and try again" >&2
        exit 1
    fi
fi

cargo build --release --quiet --bin retrac-sync --example seed
BIN=target/release/retrac-sync

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
level = "warn"
TOML

echo "== seeding $MEMBERS members"
target/release/examples/seed "$WORK/store" "$MEMBERS"
TOKEN=$("$BIN" --config "$WORK/config.toml" token create --label bench --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')

# Per-request logs would measure the terminal; the bench keeps warnings (and the start line).
RUST_LOG=warn,retrac_sync::daemon=info NO_COLOR=1 "$BIN" --config "$WORK/config.toml" run 2> "$WORK/server.log" &
SERVER_PID=$!
ADDR=
for _ in $(seq 1 300); do
    # The listener binds port 0: the daemon's start line says which port it got.
    ADDR=$(grep -o 'scim=127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -1 | cut -d= -f2 || true)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "the server did not start" >&2; cat "$WORK/server.log"; exit 1; }
BASE="http://$ADDR/scim/v2"
echo "== server pid $SERVER_PID on $ADDR"

cat > "$WORK/common.lua" <<'LUA'
token = os.getenv("TOKEN")
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/scim+json"
local counter = 0
local threads = {}
function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end
done = function(summary, latency, requests)
    local codes = 0
    io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
LUA

cat > "$WORK/get.lua" <<LUA
dofile("$WORK/common.lua")
local members = $MEMBERS
request = function()
    local n = math.random(0, members - 1)
    local path = string.format('/scim/v2/Users?filter=userName%%20eq%%20%%22user%06d%%40example.com%%22', n)
    return wrk.format("GET", path)
end
LUA

cat > "$WORK/post.lua" <<LUA
dofile("$WORK/common.lua")
local n = 0
request = function()
    n = n + 1
    local body = string.format('{"userName":"load-%d-%d-%d@example.com","name":{"givenName":"Load","familyName":"Test"},"active":true}', tid, n, math.random(1, 1000000000))
    return wrk.format("POST", "/scim/v2/Users", nil, body)
end
LUA

# PATCH: each wrk thread walks its own share of 1,000 members and flips `active` on each
# pass, so every request is a real write (never a no-op).
curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/Users?count=1000&attributes=id" \
    | python3 -c 'import json, sys; print("\n".join(r["id"] for r in json.load(sys.stdin)["Resources"]))' \
    > "$WORK/ids.txt"
cat > "$WORK/patch.lua" <<LUA
dofile("$WORK/common.lua")
local ids = {}
for line in io.lines("$WORK/ids.txt") do table.insert(ids, line) end
local i = 0
request = function()
    local share = math.floor(#ids / $THREADS)
    local idx = tid * share + (i % share) + 1
    local pass = math.floor(i / share)
    i = i + 1
    local active = (pass % 2 == 0) and "false" or "true"
    local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":' .. active .. '}]}'
    return wrk.format("PATCH", "/scim/v2/Users/" .. ids[idx], nil, body)
end
LUA

rss() {
    echo "RSS $1: $(awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$SERVER_PID/status")"
}
rss "after start"

# The server's CPU time (user + system) so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"
}

run() {
    local name=$1 script=$2 connections=$3
    echo "== $name: wrk -t$THREADS -c$connections -d${SECONDS_PER_RUN}s"
    local before
    before=$(cpu_ticks)
    TOKEN="$TOKEN" wrk -t"$THREADS" -c"$connections" -d"${SECONDS_PER_RUN}s" --latency -s "$script" "http://$ADDR" \
        | tee "$WORK/$name.txt" | grep -E 'RESULT|Non-2xx|Socket errors' || true
    # The server's CPU time per request: what it costs, whatever wrk's share of the cores.
    local ticks requests
    ticks=$(( $(cpu_ticks) - before ))
    requests=$(awk '/requests in/ { print $1 }' "$WORK/$name.txt")
    awk -v t="$ticks" -v n="${requests:-0}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "server CPU: %.1f us a request\n", t / hz * 1e6 / n }'
    rss "after $name"
}

PERF_PID=
if [ -n "${PERF_GET:-}" ]; then
    perf record -q --call-graph dwarf,16384 -F 199 -p "$SERVER_PID" -o "$PERF_GET" -- sleep "$SECONDS_PER_RUN" 2>/dev/null &
    PERF_PID=$!
fi
run get-filter "$WORK/get.lua" "$CONNECTIONS"
if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; fi
PERF_PID=
if [ -n "${PERF_POST:-}" ]; then
    perf record -q --call-graph dwarf,16384 -F 199 -p "$SERVER_PID" -o "$PERF_POST" -- sleep "$SECONDS_PER_RUN" 2>/dev/null &
    PERF_PID=$!
fi
run post "$WORK/post.lua" "$WRITE_CONNECTIONS"
if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; fi
run patch-active "$WORK/patch.lua" "$WRITE_CONNECTIONS"

echo "== unfiltered paging (count=100), median of 21 requests each"
page_median() {
    local start=$1
    for _ in $(seq 1 21); do
        curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "$BASE/Users?startIndex=$start&count=100"
    done | sort -n | sed -n 11p
}
TOTAL=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/Users?count=0" | python3 -c 'import json, sys; print(json.load(sys.stdin)["totalResults"])')
FIRST=$(page_median 1)
LAST=$(page_median $((TOTAL - 99)))
echo "RESULT paging total=$TOTAL startIndex=1: ${FIRST}s  startIndex=$((TOTAL - 99)): ${LAST}s"

# A filter no index serves scans every member; reported for information (no target).
SCAN=$(for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
        "$BASE/Users?filter=name.familyName%20sw%20%22Family9999%22&count=100"
done | sort -n | sed -n 3p)
echo "RESULT scan filter (name.familyName sw, no index) over $TOTAL members: median ${SCAN}s"

echo "== peak RSS"
grep -E 'VmHWM|VmRSS' "/proc/$SERVER_PID/status"
