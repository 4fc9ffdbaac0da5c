#!/usr/bin/env bash
# The training half of `make bench-search` on one GPU, as parallel processes: the small
# ViTs here leave a GPU mostly idle one at a time (each step is a few hundred tiny
# kernels), so baselines train beside the supernet, the four searches run at once, and
# every finalist's fine-tune is its own process. Each part caches its result under OUT
# (see scripts/bench_search_stages.py). The measuring half (int8 reference, qemu firmware) needs
# the cross compiler and emulator: run afterwards, on the CPU machine, with OUT copied
# back and the same flags,
#     python scripts/bench_search.py --out OUT --supernet-epochs N <FLAGS>
# which finds everything trained and only measures and reports.
#
#   bench/search_gpu.sh OUT DEADLINE_S SUPERNET_EPOCHS|auto FLAGS...
#
# "auto" sizes the supernet's epochs to the deadline from a timed smoke run (the smoke
# run also checks every part on the GPU before the real run starts). Needs python3 with
# torch (CUDA), onnx, onnxruntime, jinja2, matplotlib and tqdm; the package is taken
# from compiler/. Logs go to OUT/logs.
# shellcheck source=bench/gpu_common.sh
. "$(dirname "$0")/gpu_common.sh"
shift 3

smoke=$(mktemp -d)
echo "smoke run (every part, 6,400 images, on $device)"
if ! timeout 240 "$py" scripts/bench_search.py "$@" --device "$device" --out "$smoke" \
        --limit 6400 --part train --budgets 64 --supernet-epochs 3 --finetune-epochs 1 \
        --distill-epochs 1 --population 4 --generations 1 --pool 8 --finalists 2 \
        >"$out/logs/smoke.log" 2>&1; then
    tail -30 "$out/logs/smoke.log"; echo "smoke run failed"; exit 1
fi
step_s=$("$py" - "$smoke" <<'EOF'
import sys, torch
ck = torch.load(f"{sys.argv[1]}/supernet.pt", weights_only=False)
print(min(ck["epoch_seconds"]) / 46)   # 5,867 training images: 46 steps of 128 an epoch
EOF
)
echo "supernet step: $step_s s (smoke run, its fastest epoch); $(left) s left"
if [ "$epochs" = auto ]; then
    # Left after the supernet: its pool (~30 s), then searches and fine-tunes (230 s;
    # what misses the deadline is trained later on the CPU machine, from the cache).
    # 430 steps an epoch, at 1.4x a lone step beside the three baselines' processes.
    epochs=$("$py" -c "
s = $step_s; left = $(left)
print(max(20, min(300, int((left - 30 - 230) / (430 * s * 1.4)))))")
fi
echo "supernet epochs: $epochs"
flags=(--supernet-epochs "$epochs" "$@")

for b in 16 32 "64 128"; do
    # shellcheck disable=SC2086  # "64 128": two budgets, one process (the same model)
    bench "${flags[@]}" --part baselines --only $b >"$out/logs/baseline_${b// /_}.log" 2>&1 &
done
bench "${flags[@]}" --part supernet >"$out/logs/supernet.log" 2>&1 \
    || { tail -20 "$out/logs/supernet.log"; echo "supernet failed"; }
echo "supernet done at $(( $(date +%s) - start )) s"
pids=()
for b in 16 32 64 128; do
    bench "${flags[@]}" --part search --only $b >"$out/logs/search_$b.log" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
echo "searches done at $(( $(date +%s) - start )) s"
tune() {
    for b in "$@"; do for f in 0 1; do
        bench "${flags[@]}" --part finetune --only "$b" --finalist $f \
            >"$out/logs/finetune_${b}_$f.log" 2>&1 &
    done; done
    wait
}
tune 16 32 64     # waits for the baselines too
tune 128          # usually the 64 KB models again: cached, no training
echo "all parts done at $(( $(date +%s) - start )) s"
grep -h "Error\|error" "$out"/logs/*.log | head -20
echo "$epochs" >"$out/supernet_epochs"
