#!/usr/bin/env bash
# The whole CTest suite on a sanitizer build of the CPU backend: AddressSanitizer (out-of-bounds,
# use-after-free, leaks) and UndefinedBehaviorSanitizer (overflow, misaligned or invalid loads,
# bad shifts), every finding fatal. Builds into build-asan/ (-DINFLLM_CUDA=OFF
# -DINFLLM_SANITIZE=ON), so it never disturbs build/. Extra arguments go to ctest, e.g.
# `launch/sanitize.sh -R hostile`. Leaks inside Open MPI and its helpers (allocations it makes once
# and never frees) are suppressed by launch/lsan.supp; leaks of our own code are not.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
jobs=${INFLLM_JOBS:-$(nproc)}
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFLLM_CUDA=OFF -DINFLLM_SANITIZE=ON \
  >/dev/null
cmake --build build-asan -j"$jobs"
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
supp=$PWD/launch/lsan.supp
# fast_unwind_on_malloc=0: whole allocation stacks, so leaks made inside Open MPI (whose libraries
# have no frame pointers) are matched by launch/lsan.supp.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:exitcode=87}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp:print_suppressions=0}
cd build-asan
start=$(date +%s)
rc=0
ctest --output-on-failure "$@" || rc=$?
echo "sanitize: ctest exit $rc after $(($(date +%s) - start)) s (ASan + UBSan, CPU backend)"
exit $rc
