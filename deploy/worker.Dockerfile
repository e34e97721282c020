# The inference worker image: torch with CUDA (PyPI's Linux wheels bundle the CUDA runtime; the host needs the
# NVIDIA driver and Container Toolkit), transformers, and the service. Weights are NOT in the image: they are
# downloaded at first start into the model cache volume, or mounted (set M4T_MODEL to the folder).
FROM python:3.11-slim-bookworm

ARG TORCH_SPEC="torch==2.13.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/hf \
    M4T_DATA_DIR=/models/m4t \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072

# MALLOC_*: glibc's malloc tuned for the worker's dozens of threads (m4t/serve.py WORKER_MALLOC_ENV says why
# and what it saves).
WORKDIR /app
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY shared ./shared
COPY worker ./worker
COPY client ./client
COPY m4t ./m4t
# The project itself; its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[worker]" \
    && useradd --system --uid 10001 --home-dir /app m4t \
    && mkdir -p /models \
    && chown m4t /models

USER 10001
VOLUME ["/models"]
CMD ["m4t", "worker"]
