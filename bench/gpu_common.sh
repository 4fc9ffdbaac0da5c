# Sourced by bench/search_gpu.sh and bench/retrain_gpu.sh: their shared arguments
# (OUT DEADLINE_S EPOCHS), a deadline clock, the environment, and `bench`, one part of
# scripts/bench_search.py on the device that stops at the deadline.
set -u
out=$1; deadline=$2; epochs=$3
start=$(date +%s)
left() { echo $(( deadline - ($(date +%s) - start) )); }
export PYTHONPATH="$PWD/compiler${PYTHONPATH:+:$PYTHONPATH}" TQDM_MININTERVAL=30
py=${PY:-python3} device=${DEVICE:-cuda}   # PY, DEVICE: to try the scripts on a CPU
mkdir -p "$out/logs"
bench() { timeout "$(left)" "$py" scripts/bench_search.py --device "$device" --out "$out" \
              ${BENCH_THREADS:+--threads "$BENCH_THREADS"} "$@"; }
