#!/usr/bin/env bash
# The first command of the README: installs what is missing, builds, and trains the tiny model of
# configs/quickstart_sparse.json on the CPU on the built-in synthetic retrieval task (no download,
# no GPU), with InfLLM-V2 sparse attention, for about a minute on 2 cores: the step lines show the
# retrieval accuracy on the batches it trains on rise from chance (6%) to about 80%.
# Extra arguments go to the trainer, e.g. `launch/quickstart.sh --set train.max_steps=20`.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
launch/build.sh
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec build/infllm-train configs/quickstart_sparse.json --set resume=none "$@"
