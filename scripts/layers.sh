#!/usr/bin/env bash
# Checks the layering written in ARCHITECTURE.md: no module of src/ uses a module of a
# higher layer. Reads code only: comments and the `#[cfg(test)]` module at the end of a file
# are left out (a unit test may drive the write path from below it). Prints what each module
# uses, and exits 1 on the first layer that points up.
set -euo pipefail
cd "$(dirname "$0")/.."

# module:layer, as in ARCHITECTURE.md ("The modules, by layer").
layers="member:0 events:0 config:0 telemetry:0 listener:0 version:0
store:1 directory:1
provision:2
owner:3 tokens:3 access:3
scim:4 reconcile:4 schedule:4 admin:4 health:4 webhooks:4 console:4
main:5 cli:5 daemon:5 demo:5 doctor:5"

layer_of() { for e in $layers; do [ "${e%%:*}" = "$1" ] && { echo "${e##*:}"; return; }; done; echo "?"; }

uses() {
  local own=$1; shift
  find "$@" -name '*.rs' ! -name 'tests.rs' -print0 | xargs -0 -n1 awk '/^#\[cfg\(test\)\]/{exit} !/^[[:space:]]*\/\//' |
    grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u | grep -vx "$own" || true
}

bad=0
for e in $layers; do
  m=${e%%:*}; own=${e##*:}
  # A module is src/$m.rs, src/$m/ (with mod.rs), or both (src/$m.rs with its children).
  f=$(for p in "src/$m.rs" "src/$m"; do if [ -e "$p" ]; then printf '%s ' "$p"; fi; done)
  [ -n "$f" ] || { echo "layers.sh: src/$m is listed but does not exist"; exit 1; }
  # shellcheck disable=SC2086 # $f is one or two paths without spaces
  used=$(uses "$m" $f | tr '\n' ' ')
  echo "$own $m -> $used"
  for u in $used; do
    l=$(layer_of "$u")
    if [ "$l" = "?" ]; then echo "  $m uses $u, which has no layer in this script"; bad=1
    elif [ "$l" -gt "$own" ]; then echo "  $m (layer $own) uses $u (layer $l): it points up"; bad=1
    fi
  done
done
# Every module of src/ must have a layer.
for f in src/*.rs src/*/; do
  m=$(basename "$f" .rs); [ "$m" = lib ] && continue
  [ "$(layer_of "$m")" = "?" ] && { echo "  src/$m has no layer in this script"; bad=1; }
done
[ "$bad" = 0 ] && echo "layers: OK" || { echo "layers: a module points up (see above)"; exit 1; }
