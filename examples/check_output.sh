#!/usr/bin/env bash
# check_output.sh: runs an example and checks what it prints (ctest label
# `example`).
#
#   check_output.sh EXPECTED COMMAND [ARGS...]
#
# The command must exit 0, and its standard output must match EXPECTED, a
# file of patterns taken in order, one per output line:
#   text          the line must be exactly `text`
#   ~ REGEX       the line must match the extended regular expression
#                 (whole line)
#   ...           any number of lines (up to the first that matches the
#                 next pattern)
#   * REGEX       not in order: some line anywhere must match (whole line)
#   #! comment    ignored
# Every output line must be consumed by the ordered patterns (end with `...`
# to allow more). On failure it shows the output, stderr and the first
# pattern that did not match.
set -u

if [[ $# -lt 2 ]]; then
  echo "usage: $0 EXPECTED COMMAND [ARGS...]" >&2
  exit 2
fi
expected_file=$1
shift

out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

"$@" >"$out" 2>"$err"
status=$?

fail() {
  echo "FAIL: $*" >&2
  echo "---- stdout ----" >&2
  cat "$out" >&2
  echo "---- stderr ----" >&2
  cat "$err" >&2
  exit 1
}

if [[ $status -ne 0 ]]; then
  fail "exit status $status (expected 0)"
fi

mapfile -t lines <"$out"
mapfile -t patterns <"$expected_file"

matches() {  # matches PATTERN LINE: one ordered pattern against one line
  local pattern=$1 line=$2
  if [[ $pattern == "~ "* ]]; then
    [[ $line =~ ^(${pattern:2})$ ]]
  else
    [[ $line == "$pattern" ]]
  fi
}

i=0          # next output line
skipping=0   # after `...`
for pattern in "${patterns[@]}"; do
  case $pattern in
    "#!"*) continue ;;
    "* "*)
      found=0
      for line in "${lines[@]}"; do
        if [[ $line =~ ^(${pattern:2})$ ]]; then found=1; break; fi
      done
      [[ $found -eq 1 ]] || fail "no line matches '${pattern:2}'"
      continue ;;
    "...") skipping=1; continue ;;
  esac
  while :; do
    if [[ $i -ge ${#lines[@]} ]]; then
      fail "output ended; expected a line matching '$pattern'"
    fi
    if matches "$pattern" "${lines[$i]}"; then
      i=$((i + 1))
      skipping=0
      break
    fi
    if [[ $skipping -eq 1 ]]; then
      i=$((i + 1))
      continue
    fi
    fail "line $((i + 1)) is '${lines[$i]}'; expected '$pattern'"
  done
done
if [[ $skipping -eq 0 && $i -lt ${#lines[@]} ]]; then
  fail "unexpected line $((i + 1)): '${lines[$i]}'"
fi
echo "ok: $(basename "$expected_file" .txt): ${#lines[@]} lines checked"
