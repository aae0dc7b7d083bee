#!/usr/bin/env bash
# Build the container image (docs/deploy.md). pip cannot reach an index inside a build here, so
# this first puts every wheel the image needs into the build context (.whl/<variant>/): torch,
# pinned, then this project with the server's dependencies (the `server` extra). The Dockerfile
# installs only from there.
#
#   bash scripts/build-image.sh                  # retrieval-svc:cpu, built with podman
#   VARIANT=cuda bash scripts/build-image.sh     # retrieval-svc:cuda (PyPI's CUDA 12 torch)
#   BUILDER=docker bash scripts/build-image.sh   # docker build (also: BUILDER=buildah)
#   WHEELS_ONLY=1 bash scripts/build-image.sh    # prepare .whl/<variant>/ only, then build yourself
#   BASE_IMAGE=localhost/debian-python:3.11-bookworm bash scripts/build-image.sh
#                                                # on a local base (no registry; scripts/base-image.sh)
#
# Other settings: TAG (default retrieval-svc:<variant>), PYTHON (default .venv/bin/python; must
# be CPython 3.11 on Linux x86_64, the image's interpreter, so the wheels fit it), BASE_IMAGE
# (default: the Dockerfile's, python:3.11-slim-bookworm; where no registry is reachable, make a
# local one with scripts/base-image.sh and pass BASE_IMAGE=localhost/debian-python:3.11-bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANT=${VARIANT:-cpu}
BUILDER=${BUILDER:-podman}
TAG=${TAG:-retrieval-svc:$VARIANT}
PYTHON=${PYTHON:-.venv/bin/python}
TORCH_VERSION=2.13.0
WHEELS=.whl/$VARIANT

case $VARIANT in
    cpu)
        # The CPU build of torch: our machines keep it in /opt/wheels (as scripts/setup.sh),
        # elsewhere PyTorch's CPU index has it. A bare torch requirement pulls GBs of CUDA wheels.
        TORCH=("torch==$TORCH_VERSION+cpu")
        if [ -d /opt/wheels ]; then
            SOURCES=(--find-links /opt/wheels)
        else
            SOURCES=(--extra-index-url https://download.pytorch.org/whl/cpu)
        fi
        ;;
    cuda)
        # PyPI's Linux torch is the CUDA 12 build; its CUDA libraries come as nvidia-* wheels.
        TORCH=("torch==$TORCH_VERSION")
        SOURCES=()
        ;;
    *)
        echo "build-image: VARIANT must be cpu or cuda, got '$VARIANT'" >&2
        exit 2
        ;;
esac

if ! "$PYTHON" -c 'import sys, platform; sys.exit(not (sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() == "x86_64"))'; then
    echo "build-image: $PYTHON is not CPython 3.11 on Linux x86_64; the wheels would not fit the image's python:3.11" >&2
    exit 2
fi

# A fresh folder each time: stale wheels would be installable too. And no build/ left by an
# earlier build: setuptools copies into it without removing what it held, so a module since
# deleted from the source would end up in the wheel.
rm -rf "$WHEELS" build
mkdir -p "$WHEELS"
echo "build-image: preparing wheels in $WHEELS" >&2
# One resolution for torch and the project with its server extra, so the dependencies fit the
# pinned torch.
"$PYTHON" -m pip wheel --disable-pip-version-check --quiet "${SOURCES[@]}" \
    --wheel-dir "$WHEELS" "${TORCH[@]}" ".[server]"
du -sh "$WHEELS" >&2

if [ "${WHEELS_ONLY:-0}" = 1 ]; then
    echo "build-image: wheels ready; build with: docker build --build-arg VARIANT=$VARIANT${BASE_IMAGE:+ --build-arg BASE_IMAGE=$BASE_IMAGE} -t $TAG ." >&2
    exit 0
fi

BUILD_ARGS=(--build-arg VARIANT="$VARIANT")
if [ -n "${BASE_IMAGE:-}" ]; then
    BUILD_ARGS+=(--build-arg BASE_IMAGE="$BASE_IMAGE")
fi

# --format docker: the OCI image format has no HEALTHCHECK (podman and buildah drop it).
# --storage-driver vfs --isolation chroot: builds without fuse-overlayfs or user namespaces here;
# run the image with the same storage driver (podman --storage-driver vfs run ...).
case $BUILDER in
    podman)
        podman --storage-driver vfs build --isolation chroot --format docker \
            "${BUILD_ARGS[@]}" -t "$TAG" .
        podman --storage-driver vfs image ls "$TAG"
        ;;
    buildah)
        buildah --storage-driver vfs build --isolation chroot --format docker \
            "${BUILD_ARGS[@]}" -t "$TAG" .
        buildah --storage-driver vfs images "$TAG"
        ;;
    docker)
        docker build "${BUILD_ARGS[@]}" -t "$TAG" .
        docker image ls "$TAG"
        ;;
    *)
        echo "build-image: BUILDER must be podman, buildah or docker, got '$BUILDER'" >&2
        exit 2
        ;;
esac
