#!/usr/bin/env bash
# `make test` with a CPU hog on every core beside it: the suite must pass on a busy machine, not only a quiet one.
#
#   bench/suite_under_load.sh            # one hog a core (2 on the development machine), then make test
#   HOGS=0 bench/suite_under_load.sh     # the same run, quiet, for the figure to compare with
#   bench/suite_under_load.sh ARGS='-k vote'   # arguments go to make
#
# Prints the suite's wall time and exit status. The hogs are started here and stopped on any exit, so the suite
# itself never knows it shares the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

hogs="${HOGS:-$(nproc)}"
pids=()
stop_hogs() {
    if [ "${#pids[@]}" -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop_hogs EXIT

for _ in $(seq 1 "$hogs"); do
    python3 -c "while 1: pass" &
    pids+=("$!")
done
echo "bench/suite_under_load.sh: $hogs CPU hog(s) running beside make test on $(nproc) core(s)."

started=$(date +%s)
status=0
make --no-print-directory test "$@" </dev/null || status=$?
took=$(($(date +%s) - started))
echo "bench/suite_under_load.sh: make test with $hogs hog(s): ${took} s ($((took / 60)) min $((took % 60)) s), exit $status."
exit "$status"
