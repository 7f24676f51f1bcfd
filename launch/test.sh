#!/usr/bin/env bash
# The second command of the README: installs what is missing, builds, and runs the whole CTest
# suite. GPU tests report "skipped" (exit 77) on a machine without a GPU. Extra arguments go to
# ctest, e.g. `launch/test.sh -L unit` or `launch/test.sh -R model`.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
launch/build.sh
if [ "$(id -u)" = 0 ]; then
  # Open MPI refuses root without these; the tests launch several ranks with mpiexec.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
cd build
ctest --output-on-failure --timeout 900 "$@"
