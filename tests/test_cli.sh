#!/usr/bin/env bash
# test_cli.sh: the config contract end to end through the trainer binary: `--dry-run` on
# configs/quickstart.json exits 0 and prints the config table (with --set values applied) and the
# memory plan; bad configs and bad --set options exit 2 with one line on stderr naming the file or
# option and the key path; `config-doc` prints exactly docs/CONFIG.md.
# Usage: test_cli.sh BUILD_DIR TRAINER   (run from the project root, as CTest does)
set -uo pipefail
bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=1
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
failed=0
fail() { echo "FAIL $*"; failed=1; }

if ! "$bin" config-doc >"$dir/doc.md" 2>"$dir/doc.err"; then
  fail "config-doc exited non-zero: $(cat "$dir/doc.err")"
fi
if diff -u docs/CONFIG.md "$dir/doc.md" >"$dir/doc.diff"; then
  echo "ok   docs/CONFIG.md equals \`config-doc\` ($(wc -l <docs/CONFIG.md) lines)"
else
  head -20 "$dir/doc.diff"
  fail "docs/CONFIG.md differs from \`$bin config-doc\` (regenerate: $bin config-doc > docs/CONFIG.md)"
fi

# --dry-run: exit 0, the config table with the --set values, the memory plan.
if "$bin" configs/quickstart.json --dry-run --set train.lr=5e-3 --set run_dir="$dir/run" \
    --set 'data.val_files=["v.tok"]' >"$dir/dry.out" 2>"$dir/dry.err"; then
  grep -qE '^ +train\.lr +0\.005$' "$dir/dry.out" || fail "--dry-run table lacks train.lr 0.005"
  grep -qE '^ +data\.val_files +\["v\.tok"\]$' "$dir/dry.out" || fail "--dry-run table lacks data.val_files"
  grep -q "memory plan" "$dir/dry.out" || fail "--dry-run printed no memory plan"
  echo "ok   --dry-run configs/quickstart.json exits 0 with the table and the memory plan"
else
  fail "--dry-run configs/quickstart.json exited non-zero: $(cat "$dir/dry.err")"
fi

# reject NAME CONFIG_TEXT WANT [ARGS...]: exit 2, exactly one stderr line, containing WANT.
reject() {
  local name=$1 text=$2 want=$3
  shift 3
  local cfg="$dir/bad.json"
  [ "$text" = "-" ] && cfg=configs/quickstart.json || printf '%s' "$text" >"$cfg"
  "$bin" "$cfg" --dry-run "$@" >"$dir/out" 2>"$dir/err"
  local rc=$? lines
  lines=$(grep -c . "$dir/err")
  if [ $rc -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$want" "$dir/err"; then
    fail "$name: exit $rc, $lines stderr line(s): $(cat "$dir/err") (wanted exit 2, one line with: $want)"
  else
    echo "ok   $name: $(cat "$dir/err")"
  fi
}
reject "unknown key" '{"train": {"max_step": 3}}' 'unknown key "train.max_step" (did you mean "train.max_steps"?)'
reject "nested unknown key" '{"data": {"synthetic": {"n_pair": 4}}}' '"data.synthetic.n_pair"'
reject "wrong type" '{"model": {"hidden_size": "abc"}}' 'model.hidden_size: expected a positive integer, got "abc"'
reject "non-integer" '{"model": {"hidden_size": 3.5}}' 'model.hidden_size: expected a positive integer, got 3.5'
reject "bad enum" '{"train": {"schedule": "linear"}}' 'train.schedule: expected one of'
reject "heads" '{"model": {"num_attention_heads": 6, "num_key_value_heads": 4}}' 'model.num_key_value_heads'
reject "seq_len vs block" '{"data": {"seq_len": 1000}}' 'data.seq_len: 1000 is not a multiple of attention.block_size'
reject "cp vs one rank" '{"parallel": {"cp": 2}}' 'parallel.cp: 2 does not divide the number of ranks 1'
reject "malformed JSON" $'{\n  "seed": 1,\n  "run_dir" "x"\n}\n' 'bad.json: line 3'
reject "--set bad value" - '--set train.lr=abc: expected a number >= 0, got "abc"' --set train.lr=abc
reject "--set unknown key" - '--set train.max_step=3: unknown key "train.max_step"' --set train.max_step=3
"$bin" "$dir/none.json" --dry-run >"$dir/out" 2>"$dir/err"
rc=$?
if [ $rc -eq 2 ] && grep -qF "none.json: cannot read: No such file" "$dir/err"; then
  echo "ok   missing file: $(cat "$dir/err")"
else
  fail "missing file: exit $rc: $(cat "$dir/err")"
fi

[ $failed -eq 0 ] && echo "test_cli: passed" || echo "test_cli: FAILED"
exit $failed
