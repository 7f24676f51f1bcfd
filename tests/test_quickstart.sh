#!/usr/bin/env bash
# The quickstart shows its model learning within its minute: launch/quickstart.sh trains
# configs/quickstart_sparse.json, which runs InfLLM-V2 sparse attention and says so once, every
# step line carries the retrieval accuracy of the batches it trains on, and the last validation
# retrieves at least half of the answers (chance: 1 in 16). CPU runs are deterministic, so this
# reads the same numbers every time.
# Usage: test_quickstart.sh BUILD_DIR TRAINER
set -euo pipefail
bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2
grep -q "configs/quickstart_sparse.json" launch/quickstart.sh ||
  { echo "FAIL launch/quickstart.sh does not train configs/quickstart_sparse.json"; exit 1; }
"$bin" configs/quickstart_sparse.json --set run_dir="$dir/run" --set resume=none \
  --set checkpoint.at_end=false >"$dir/out"
grep -E "^(InfLLM|step|eval)" "$dir/out"
sparse=$(grep -c "^InfLLM-V2 sparse attention (data.seq_len 256 >= attention.dense_len 256)" "$dir/out" || true)
steps=$(grep -c "^step " "$dir/out" || true)
with_acc=$(grep -c "^step .*| retrieval [0-9.]*% |" "$dir/out" || true)
last=$(grep "^eval step 100 " "$dir/out" | sed -n 's/.*retrieval accuracy \([0-9.]*\)%.*/\1/p')
echo "sparse line: $sparse, step lines: $steps ($with_acc with the retrieval accuracy), last validation: ${last:-none}%"
[ "$sparse" = 1 ] && [ "$steps" -ge 10 ] && [ "$with_acc" = "$steps" ] && [ -n "$last" ] &&
  awk -v a="$last" 'BEGIN { exit !(a >= 50) }' || { echo "test_quickstart: FAILED"; exit 1; }
echo "test_quickstart: passed"
