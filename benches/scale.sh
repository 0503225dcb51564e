#!/usr/bin/env bash
# Scale bench (its figures: docs/development.md, "Scale"): seeds N members through provision::apply_batch
# (examples/seed) and measures the release binary at that size:
#   - the store's size on disk;
#   - the daemon's time from start to ready (its "retrac-sync is running" line), median of 3;
#   - the idle daemon's RSS, and per member;
#   - `members list --format csv` through the daemon: time, the daemon's RSS growth (sampled
#     every 20 ms), the CLI's peak RSS; median of 3;
#   - two SCIM filters: one an index serves (userName eq) and one no index serves
#     (name.familyName co): time, median of 3;
#   - `members show EMAIL` with no daemon (the last member created, so the scan reads every
#     record): time and peak RSS, median of 3.
# Usage: benches/scale.sh [N] (default 100000). Set KEEP=DIR to reuse a seeded store in DIR
# (seeded there the first time), so that a run at 1,000,000 seeds once. BIN=... and SEED=...
# measure other builds of the binary and the seeder (e.g. an older commit's), unbuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100000}
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet --bin retrac-sync --example seed
fi
BIN=${BIN:-$PWD/target/release/retrac-sync}
SEED=${SEED:-$PWD/target/release/examples/seed}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "scale.sh needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }

if [ -n "${KEEP:-}" ]; then
    WORK=$KEEP
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d)
fi
SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
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
CLI=("$BIN" --config "$WORK/config.toml")

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Max RSS (KiB) and elapsed seconds from a `/usr/bin/time -f '%M %e'` line.
timed() { "$TIME" -f '%M %e' -o "$WORK/time.out" "$@"; }

if [ ! -f "$WORK/seeded-$N" ]; then
    rm -rf "$WORK/store"
    echo "== seeding $N members"
    "$SEED" "$WORK/store" "$N"
    "${CLI[@]}" token create --label bench --json \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])' > "$WORK/token"
    touch "$WORK/seeded-$N"
fi
TOKEN=$(cat "$WORK/token")
STORE_KB=$(du -sk "$WORK/store" | cut -f1)

start_server() {
    rm -f "$WORK/server.log"
    local t0
    t0=$(now)
    RUST_LOG=warn,retrac_sync::daemon=info NO_COLOR=1 "${CLI[@]}" run 2> "$WORK/server.log" &
    SERVER_PID=$!
    until grep -q 'retrac-sync is running' "$WORK/server.log" 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
        sleep 0.01
    done
    READY=$(echo "$(now) - $t0" | bc -l)
    ADDR=$(grep -o 'scim=127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -1 | cut -d= -f2)
}

echo "== start to ready (3 starts)"
READIES=()
for i in 1 2 3; do
    start_server
    READIES+=("$READY")
    [ "$i" = 3 ] || stop_server
done
READY_MED=$(printf '%s\n' "${READIES[@]}" | median)
sleep 3
IDLE_KB=$(rss_kb "$SERVER_PID")

echo "== members list through the daemon (3 runs)"
LIST_T=() LIST_CLI=() LIST_GROW=()
for _ in 1 2 3; do
    before=$(rss_kb "$SERVER_PID")
    ( peak=0; while kill -0 "$SERVER_PID" 2>/dev/null && [ ! -f "$WORK/list.done" ]; do
          r=$(rss_kb "$SERVER_PID"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.02
      done; echo "$peak" > "$WORK/list.peak" ) &
    SAMPLER=$!
    rm -f "$WORK/list.done"
    timed "${CLI[@]}" members list --format csv > "$WORK/list.csv"
    touch "$WORK/list.done"
    wait "$SAMPLER"
    rm -f "$WORK/list.done"
    read -r cli_kb secs < "$WORK/time.out"
    lines=$(($(wc -l < "$WORK/list.csv") - 1))
    [ "$lines" = "$N" ] || echo "warning: the listing has $lines members, not $N" >&2
    LIST_T+=("$secs") LIST_CLI+=("$cli_kb") LIST_GROW+=("$(( $(cat "$WORK/list.peak") - before ))")
done

scim_time() {
    for _ in 1 2 3; do
        curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "http://$ADDR/scim/v2/Users?$1"
    done | median
}
LAST=$(printf 'user%06d@example.com' $((N - 1)))
echo "== SCIM filters (3 runs each)"
HITS=$(curl -s -H "Authorization: Bearer $TOKEN" \
    "http://$ADDR/scim/v2/Users?filter=userName%20eq%20%22$LAST%22" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["totalResults"])')
[ "$HITS" = 1 ] || echo "warning: userName eq found $HITS members" >&2
EQ=$(scim_time "filter=userName%20eq%20%22$LAST%22")
CO=$(scim_time "filter=name.familyName%20co%20%22mily$((N - 1))%22&count=100")
stop_server

# What the daemon costs with no member at all, to tell the per-member cost from the fixed one.
echo "== idle RSS with an empty store"
FULL_CONFIG=$WORK/config.toml
sed "s|$WORK/store|$WORK/empty-store|; s|$WORK/admin.sock|$WORK/empty.sock|" "$FULL_CONFIG" > "$WORK/empty.toml"
CLI=("$BIN" --config "$WORK/empty.toml")
start_server
sleep 3
EMPTY_KB=$(rss_kb "$SERVER_PID")
stop_server
rm -rf "$WORK/empty-store"
CLI=("$BIN" --config "$FULL_CONFIG")

echo "== members show with no daemon (3 runs)"
SHOW_T=() SHOW_KB=()
for _ in 1 2 3; do
    timed "${CLI[@]}" members show "$LAST" > /dev/null
    read -r kb secs < "$WORK/time.out"
    SHOW_T+=("$secs") SHOW_KB+=("$kb")
done

med() { printf '%s\n' "$@" | median; }
mb() { echo "scale=1; $1 / 1024" | bc -l; }
echo
echo "RESULT scale N=$N (release build; medians of 3)"
printf '| %-52s | %s |\n' "what" "$N members"
printf '| %-52s | %s |\n' "---" "---"
printf '| %-52s | %s MB (%s bytes a member) |\n' "store on disk" "$(mb "$STORE_KB")" "$((STORE_KB * 1024 / N))"
printf '| %-52s | %.2f s |\n' "daemon start to ready" "$READY_MED"
printf '| %-52s | %s MB (%s bytes a member) |\n' "idle daemon RSS" "$(mb "$IDLE_KB")" "$((IDLE_KB * 1024 / N))"
printf '| %-52s | %s MB (%s bytes a member above it) |\n' "  idle daemon RSS with an empty store" "$(mb "$EMPTY_KB")" "$(((IDLE_KB - EMPTY_KB) * 1024 / N))"
printf '| %-52s | %.2f s |\n' "members list --format csv through the daemon" "$(med "${LIST_T[@]}")"
printf '| %-52s | +%s MB |\n' "  daemon RSS growth during the listing" "$(mb "$(med "${LIST_GROW[@]}")")"
printf '| %-52s | %s MB |\n' "  CLI peak RSS" "$(mb "$(med "${LIST_CLI[@]}")")"
printf '| %-52s | %.3f s |\n' "SCIM filter userName eq (index)" "$EQ"
printf '| %-52s | %.3f s |\n' "SCIM filter name.familyName co (no index)" "$CO"
printf '| %-52s | %.2f s, %s MB |\n' "members show EMAIL, no daemon (last record)" "$(med "${SHOW_T[@]}")" "$(mb "$(med "${SHOW_KB[@]}")")"
