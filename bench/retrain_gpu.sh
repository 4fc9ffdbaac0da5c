#!/usr/bin/env bash
# Retrain, on one GPU, every model the bench table needs -- each budget's finalists from
# the searches already cached under OUT, and the baselines -- as parallel processes (one
# small ViT leaves a GPU mostly idle), all for the same E epochs. "auto" sizes E to the
# deadline: every process first trains one epoch side by side, and the slowest one's
# time sets E. Measure afterwards on the CPU machine, with OUT copied back and the same
# flags plus --finetune-epochs E:
#     python scripts/bench_search.py --out OUT <FLAGS> --finetune-epochs E
#
#   bench/retrain_gpu.sh OUT DEADLINE_S EPOCHS|auto FLAGS...
#
# FLAGS are the bench's (they must select the cached searches: same supernet and search
# options). Writes the chosen E to OUT/finetune_epochs and logs to OUT/logs.
BENCH_THREADS=1   # one thread a process: eight of them share the device's CPU cores
# shellcheck source=bench/gpu_common.sh
. "$(dirname "$0")/gpu_common.sh"
shift 3

wave() {   # $1: log tag; the rest: flags. Every model once, side by side.
    local tag=$1; shift
    for b in 16 32 64; do for f in 0 1; do
        bench "$@" --part finetune --only $b --finalist $f >"$out/logs/${tag}_${b}_$f.log" 2>&1 &
    done; done
    for b in 16 32 "64 128"; do
        # shellcheck disable=SC2086  # "64 128": two budgets, one process (the same model)
        bench "$@" --part baselines --only $b >"$out/logs/${tag}_base_${b// /_}.log" 2>&1 &
    done
    wait
    bench "$@" --part finetune --only 128 >"$out/logs/${tag}_128.log" 2>&1   # 64 KB's: cached
}

if [ "$epochs" = auto ]; then
    wave timing "$@" --finetune-epochs 1
    epochs=$("$py" - "$out" "$(left)" <<'EOF'
import glob, sys, torch
slowest = max(torch.load(p, weights_only=False)["record"]["train_s"]
              for p in glob.glob(f"{sys.argv[1]}/models/*.pt"))
# 25 s for the processes to start and save, 10% for the epochs' spread
print(max(1, int((float(sys.argv[2]) - 25) / (slowest * 1.1))))
print(f"slowest epoch side by side: {slowest:.1f} s", file=sys.stderr)
EOF
    )
fi
echo "epochs: $epochs ($(left) s left)"
echo "$epochs" >"$out/finetune_epochs"
wave train "$@" --finetune-epochs "$epochs"
echo "done at $(( $(date +%s) - start )) s"
grep -h "Error\|error" "$out"/logs/train_*.log | head -20
