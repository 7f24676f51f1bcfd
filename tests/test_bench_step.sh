#!/usr/bin/env bash
# bench/step.sh keeps working: on the CPU (no GPU, and no PyTorch peer in CI: its rows are then
# missing, which the script reports and survives) it must time our side of a dense and a sparse
# case, print them as table rows with tokens/s, and print each run's profiled split.
# Usage: test_bench_step.sh BUILD_DIR TRAINER
set -euo pipefail
build=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
export OMP_NUM_THREADS=2
bash bench/step.sh "$build" configs/quickstart.json:512 configs/sparse_cpu.json:1024 >"$out" 2>/dev/null
cat "$out"
fail() { echo "FAIL test_bench_step: $*"; exit 1; }
grep -Eq '^\| quickstart \| 512 \| ours \| dense \| [0-9]+ \| [0-9.]+k \|' "$out" || fail "no dense row for ours"
grep -Eq '^\| sparse_cpu \| 1024 \| ours \| sparse \| [0-9]+ \| [0-9.]+k \|' "$out" || fail "no sparse row for ours"
[ "$(grep -c '^- .*gemm [0-9]*, attention [0-9]*, selection' "$out")" = 2 ] || fail "profile lines missing"
grep -q '^- sparse_cpu.json T=1024 : .*selection [1-9]' "$out" || fail "the sparse run's profile has no selection time"
echo "test_bench_step: passed"
