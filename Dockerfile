# xaudit demo image: `docker build -t xaudit .` then `docker run -p 8501:8501 xaudit`.
# The demo workspace is built at image build time on CPU torch, so the container serves at once.
# GPU variant: docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 -t xaudit:gpu .
#              docker run --gpus all -p 8501:8501 xaudit:gpu
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG DEMO_FLAGS=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    XAUDIT_HOME=/data/workspace \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_PORT=8501

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
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
# The same build the tests and `make demo` run, without serving.
RUN xaudit demo --no-serve $DEMO_FLAGS

VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://localhost:8501/_stcore/health || exit 1
CMD ["xaudit", "demo"]
