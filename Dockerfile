# xaudit demo image: the package, the dashboard and a demo workspace built at image build time.
#
#   docker build -t xaudit .                                   # CPU torch (default)
#   docker run -p 8501:8501 -v xaudit-data:/data xaudit        # http://localhost:8501
#
# CUDA variant (torch from PyTorch's CUDA 13.0 index; run with the NVIDIA container toolkit):
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 -t xaudit:gpu .
#   docker run --gpus all -p 8501:8501 -v xaudit-data:/data xaudit:gpu
#
# The workspace lives in the /data volume: a named volume (-v xaudit-data:/data) starts as a copy of
# the demo built into the image and keeps what the user adds across containers. Another port:
# -e XAUDIT_PORT=9000 -p 9000:9000. Build arguments: BASE_IMAGE (a python:3.11-slim equivalent),
# TORCH_INDEX, DEMO_FLAGS (--quick for the small workspace the tests use).
# Without a Docker engine: `make docker-check` builds and runs this file with buildah (scripts/docker_check.sh).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    XAUDIT_HOME=/data/workspace \
    XAUDIT_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 xaudit \
    && mkdir -p /data/workspace && chown -R xaudit /data

WORKDIR /app
COPY requirements.txt .
# torch/torchvision from the chosen index first (CPU by default), then everything else pinned.
RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1 \
    && pip install -r requirements.txt

COPY . .
RUN pip install --no-deps . && chown -R xaudit /app

USER xaudit
# Declared here, not at the top: a build argument is part of the cache key of every RUN after it, so
# the quick and the full image share all layers up to this one.
ARG DEMO_FLAGS=""
# The same build the tests and `make demo` run, without serving; the container's command resumes it
# with the same flags (a --quick workspace stays quick instead of growing into the full demo).
# --image-build: the demo accounts' passwords, which every container of this image would share, are
# not printed and are marked (review/demo-accounts.image-build) to be replaced at a container's
# first start. Before VOLUME: a change to /data after it would not land in the image.
ENV XAUDIT_DEMO_FLAGS=$DEMO_FLAGS
RUN xaudit demo --image-build $XAUDIT_DEMO_FLAGS

VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS "http://localhost:${XAUDIT_PORT}/_stcore/health" || exit 1
# `xaudit demo` resumes the stored build (nothing left to do) and serves on $XAUDIT_PORT; at the first
# start of a volume it first gives the demo accounts new passwords, kept in that volume only, and
# prints them (docker logs). exec makes it PID 1, so docker stop (SIGTERM) reaches it and it stops
# the dashboard with it.
CMD ["sh", "-c", "exec xaudit demo $XAUDIT_DEMO_FLAGS"]
