#!/usr/bin/env bash
# Lists the files of src/ longer than 900 lines and fails unless each is in the allow-list
# below. Every `*.rs` file counts, unit tests included; lines are counted as `wc -l` counts
# them. A file in the allow-list has its reason in a comment above its line, and
# ARCHITECTURE.md ("Checking the length of files") names it with the same reason: the script
# fails when it does not. An entry whose file is no longer too long is reported, so that it
# can be taken off the list.
set -euo pipefail
cd "$(dirname "$0")/.."

max=900

# The files allowed to be longer than $max lines: each with its reason in a comment above
# it, and named in ARCHITECTURE.md with that reason.
allowed=(
)

is_allowed() {
  local a
  for a in "${allowed[@]}"; do [ "$a" = "$1" ] && return 0; done
  return 1
}

bad=0
while IFS= read -r f; do
  n=$(wc -l < "$f")
  if [ "$n" -gt "$max" ]; then
    if is_allowed "$f"; then
      echo "$f: $n lines (allowed: see scripts/file-length.sh and ARCHITECTURE.md)"
    else
      echo "$f: $n lines (TOO LONG)"
      bad=1
    fi
  fi
done < <(find src -name '*.rs' | sort)

for a in "${allowed[@]}"; do
  if ! grep -qF "\`$a\`" ARCHITECTURE.md; then
    echo "$a is in the allow-list, but ARCHITECTURE.md (\"Checking the length of files\") does not say why"
    bad=1
  fi
  if [ ! -f "$a" ] || [ "$(wc -l < "$a")" -le "$max" ]; then
    echo "note: $a is in the allow-list but is not longer than $max lines: take it off the list and out of ARCHITECTURE.md"
  fi
done

if [ "$bad" = 0 ]; then
  echo "file-length: OK (no file of src/ longer than $max lines but those ARCHITECTURE.md says why)"
else
  echo "file-length: see above; split a file longer than $max lines into modules, or allow it: its path in the allow-list of scripts/file-length.sh with its reason in a comment, and in ARCHITECTURE.md (\"Checking the length of files\") with the same reason"
  exit 1
fi
