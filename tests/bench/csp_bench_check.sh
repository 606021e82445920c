#!/usr/bin/env bash
# csp_bench_check.sh: end-to-end check of csp-bench.
#
#   csp_bench_check.sh /path/to/csp-bench
#
# Runs a small quick selection (one small and one large size, every
# transport this build has, floors included) and checks:
#   - exit status 0, the table header and one row per transport on stdout;
#   - --json parses, every result has a positive median/min/max, and every
#     non-floor result has a floor and a positive ratio;
#   - every registered transport produced results;
#   - --plot writes an SVG when gnuplot is installed, and exits 2 with the
#     documented message when it is not (simulated with an empty PATH);
#   - bad arguments exit 2 with a message; --help exits 0;
#   - nothing is left in /dev/shm.
set -euo pipefail

bench=${1:?usage: csp_bench_check.sh /path/to/csp-bench}
[[ -x $bench ]] || { echo "FAIL: $bench is not executable"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/csp-bench-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

shm_before=$(ls /dev/shm | grep -c '^csp-bench-' || true)

# --- argument handling --------------------------------------------------
"$bench" --help > "$tmp/help" || fail "--help exited non-zero"
for opt in --quick --full --filter --transport --sizes --json --plot --list --reps --target; do
  grep -q -- "$opt" "$tmp/help" || fail "--help does not document $opt"
done
"$bench" --list --sizes 8 > "$tmp/list" || fail "--list exited non-zero"
grep -q '^pingpong/floor:shm-ring/8 ' "$tmp/list" || fail "--list lacks pingpong/floor:shm-ring/8"
if grep -q '/4K ' "$tmp/list"; then fail "--list ignores --sizes"; fi
# The default (--quick) sizes are the ones issue 4's targets name.
"$bench" --list --filter stream/floor:pipe/ > "$tmp/list" || fail "--list --filter exited non-zero"
for size in 8 64 4K 64K 1M; do
  grep -q "^stream/floor:pipe/$size " "$tmp/list" || fail "--quick does not run size $size"
done
expect_usage_error() {
  local status=0
  "$bench" "$@" > "$tmp/out" 2> "$tmp/err" || status=$?
  [[ $status -eq 2 ]] || fail "'$*' exited $status, expected 2"
  grep -q '^csp-bench: ' "$tmp/err" || fail "'$*' gave no message: $(cat "$tmp/err")"
}
expect_usage_error --bogus
expect_usage_error --sizes 3
expect_usage_error --sizes 4X
expect_usage_error --sizes
expect_usage_error --quick --full
expect_usage_error --transport no-such-transport
expect_usage_error --filter no-such-entry-anywhere
expect_usage_error --reps 0
expect_usage_error stray-argument
expect_usage_error --json /nonexistent-dir/x.json --filter switch

# --plot without gnuplot: the documented message, status 2, nothing run.
status=0
PATH=/nonexistent "$bench" --plot "$tmp/x.svg" --filter switch > /dev/null 2> "$tmp/err" || status=$?
[[ $status -eq 2 ]] || fail "--plot without gnuplot exited $status, expected 2"
grep -q 'needs gnuplot (apt-get install gnuplot-nox)' "$tmp/err" || fail "--plot without gnuplot: $(cat "$tmp/err")"

# --- a small run --------------------------------------------------------
plot_args=()
if command -v gnuplot > /dev/null; then plot_args=(--plot "$tmp/run.svg"); fi
# pingpong and stream at 8 B and 64 KiB over every transport, plus commstime.
"$bench" --quick --sizes 8,64K --filter pingpong/,stream/,commstime/ --reps 2 --target 0.02 \
  --json "$tmp/run.json" "${plot_args[@]}" > "$tmp/table" 2> "$tmp/progress" \
  || { cat "$tmp/progress"; fail "csp-bench run exited non-zero"; }

head -1 "$tmp/table" | grep -q 'workload.*size.*transport.*unit.*median.*min.*max.*ratio' \
  || fail "table header missing: $(head -1 "$tmp/table")"
grep -q 'csp-bench: .* entries in' "$tmp/progress" || fail "no progress summary on stderr"
if grep -q FAILED "$tmp/table"; then cat "$tmp/table"; fail "a benchmark failed"; fi

# Every transport this build has (per --list) must have results.
"$bench" --list --sizes 8,64K --filter pingpong/,stream/,commstime/ | awk '{split($1, p, "/"); print p[2]}' \
  | grep -v '^$' | sort -u > "$tmp/transports"

python3 - "$tmp/run.json" "$tmp/table" "$tmp/transports" <<'EOF' || fail "JSON check failed"
import json, sys
doc = json.load(open(sys.argv[1]))
table = open(sys.argv[2]).read()
ctx, results = doc["context"], doc["results"]
assert ctx["tool"] == "csp-bench", ctx
assert results, "no results"
keys = {"workload", "transport", "size", "metric", "unit", "median", "min", "max", "reps", "floor", "ratio"}
transports = set()
for r in results:
    missing = keys - r.keys()
    assert not missing, f"{r} lacks {missing}"
    name = f'{r["workload"]}/{r["transport"]}/{r["size"]} {r["unit"]}'
    for k in ("median", "min", "max"):
        assert isinstance(r[k], (int, float)) and r[k] > 0, f"{name}: {k} = {r[k]}"
    assert r["min"] <= r["median"] <= r["max"], name
    assert r["reps"] == 2, f'{name}: reps = {r["reps"]}'
    if not r["transport"].startswith("floor:"):
        assert r["floor"], f"{name}: no floor"
        assert isinstance(r["ratio"], (int, float)) and r["ratio"] > 0, f"{name}: ratio {r['ratio']}"
    transports.add(r["transport"])
    assert r["transport"] in table, f"{r['transport']} missing from the table"
expected = {"floor:fiber", "floor:memcpy", "floor:shm-ring", "floor:shm-futex",
            "floor:shm-eventfd", "floor:pipe", "floor:unix", "floor:tcp"}
if ctx.get("csp"):
    expected |= {"inproc-1w", "inproc-Nw", "thread"}
expected |= {t for t in open(sys.argv[3]).read().split() if t}
missing = expected - transports
assert not missing, f"transports without results: {sorted(missing)}"
print(f"json ok: {len(results)} results, transports: {', '.join(sorted(transports))}")
EOF

if [[ ${#plot_args[@]} -gt 0 ]]; then
  [[ -s $tmp/run.svg ]] || fail "--plot wrote no SVG"
  grep -q '<svg' "$tmp/run.svg" || fail "--plot output is not SVG"
  echo "svg ok: $(wc -c < "$tmp/run.svg") bytes"
else
  echo "svg skipped: gnuplot not installed"
fi

shm_after=$(ls /dev/shm | grep -c '^csp-bench-' || true)
[[ $shm_after -le $shm_before ]] || fail "shm segments left in /dev/shm: $(ls /dev/shm | grep '^csp-bench-')"
echo "PASS: csp-bench"
