#!/usr/bin/env bash
# Lists the functions of src/ longer than 120 lines (signature to closing brace) and fails
# unless the comments just above such a function say why, with `longer than 120 lines:` and
# a reason. Unit tests are left out: the `tests.rs` files beside their modules and the
# `#[cfg(test)]` modules. Reads code as text: it counts braces outside strings, character
# literals and comments, which is enough for rustfmt's layout.
set -euo pipefail
cd "$(dirname "$0")/.."

max=120
find src -name '*.rs' ! -name 'tests.rs' | sort | xargs awk -v max="$max" '
FNR == 1 { depth = 0; state = ""; infn = 0; skip = -1; pending = 0; note = 0 }
{
  line = $0
  # The comments and attributes above an item: whether they explain its length.
  if (line ~ /^[ \t]*(\/\/|#\[)/) {
    if (line ~ /longer than 120 lines:/) note = 1
  }
  code = ""
  # Scan the line: strings, raw strings, char literals, comments.
  n = length(line)
  for (i = 1; i <= n; i++) {
    c = substr(line, i, 1)
    if (state == "str") {
      if (c == "\\") { i++; continue }
      if (c == "\"") state = ""
      continue
    }
    if (state == "raw") {
      if (substr(line, i, length(rawend)) == rawend) { i += length(rawend) - 1; state = "" }
      continue
    }
    if (state == "block") {
      if (substr(line, i, 2) == "*/") { i++; state = "" }
      continue
    }
    if (substr(line, i, 2) == "//") break
    if (substr(line, i, 2) == "/*") { state = "block"; i++; continue }
    if (c == "r" && match(substr(line, i), /^r#*"/) && (i == 1 || substr(line, i - 1, 1) !~ /[A-Za-z0-9_]/)) {
      hashes = RLENGTH - 2
      rawend = "\""; for (h = 0; h < hashes; h++) rawend = rawend "#"
      state = "raw"; i += RLENGTH - 1; continue
    }
    if (c == "\"") { state = "str"; continue }
    if (c == "\x27") {
      if (substr(line, i + 1, 1) == "\\") { j = index(substr(line, i + 2), "\x27"); if (j > 0) { i += j + 1; continue } }
      else if (substr(line, i + 2, 1) == "\x27") { i += 2; continue }
      continue
    }
    code = code c
  }
  # A `#[cfg(test)]` module is skipped whole.
  if (code ~ /^[ \t]*#\[cfg\(test\)\]/) pending = 1
  else if (pending && code ~ /^[ \t]*(pub(\([a-z]+\))? )?mod [a-z_0-9]+ *\{/) { if (skip < 0) skip = depth; pending = 0 }
  else if (code !~ /^[ \t]*(#\[|$)/) pending = 0
  if (!infn && skip < 0 && code ~ /^[ \t]*(pub(\([a-z]+\))? )?(const )?(async )?(unsafe )?(extern "C" )?fn [A-Za-z_0-9]+/) {
    infn = 1; opened = 0; start = FNR; fdepth = depth; explained = note
    name = code; sub(/^.*fn /, "", name); sub(/[^A-Za-z_0-9].*$/, "", name)
    paren = 0
  }
  for (k = 1; k <= length(code); k++) {
    c = substr(code, k, 1)
    if (c == "(" || c == "[") paren++
    else if (c == ")" || c == "]") paren--
    else if (c == "{") { depth++; if (infn) opened = 1 }
    else if (c == "}") {
      depth--
      if (skip >= 0 && depth == skip) skip = -1
      if (infn && opened && depth == fdepth) {
        infn = 0
        len = FNR - start + 1
        if (len > max) {
          status = explained ? "explained" : "TOO LONG"
          printf "%s:%d: fn %s is %d lines (%s)\n", FILENAME, start, name, len, status
          if (!explained) bad = 1
        }
      }
    }
    else if (c == ";" && infn && !opened && paren == 0 && depth == fdepth) infn = 0
  }
  if (line !~ /^[ \t]*(\/\/|#\[)/ && line !~ /^[ \t]*$/) note = 0
}
END { exit bad }
' && echo "fn-length: OK (no function of src/ longer than $max lines without a comment saying why)" \
  || { echo "fn-length: the functions above are longer than $max lines; split them, or say why in a comment above each containing \`longer than $max lines:\` and the reason"; exit 1; }
