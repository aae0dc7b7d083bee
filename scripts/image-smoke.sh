#!/usr/bin/env bash
# Smoke test of a built image (docs/deploy.md, "Container images"), by hand: NOT run by CI, which
# has no podman. Rerun it after changing the Dockerfile or the base image.
#
#   bash scripts/image-smoke.sh                       # retrieval-svc:cpu
#   IMAGE=retrieval-svc:cuda bash scripts/image-smoke.sh
#
# It starts the image with podman as docs/deploy.md runs it (keys file mounted read-only, a fresh
# named volume on /data, ports published on 127.0.0.1 only) and with a read-only root filesystem
# and a tmpfs /tmp, as the Helm chart runs it; waits until its HEALTHCHECK passes; then, from
# outside the container: gRPC health SERVING without a key, a search without a key refused,
# examples/sample.jsonl ingested and searched with the key, /metrics answering; inside: the server
# is uid/gid 10001 and cannot write its root filesystem. Then it stops the container (SIGTERM; a
# clean exit is expected) and removes it and the volume, by id. Any failed check exits non-zero.
# Traffic goes to 127.0.0.1 only. The client side uses this checkout's .venv (scripts/setup.sh).
#
# Settings: IMAGE (retrieval-svc:cpu); GRPC_PORT (50051) and METRICS_PORT (9464), the host ports
# on 127.0.0.1; HEALTH_TIMEOUT (300 s, from `podman run` to healthy; the vfs driver copies the
# whole image first); PODMAN (podman --storage-driver vfs --runtime runc) and RUN_LIMITS
# (--ulimit nofile=16384:16384 --ulimit nproc=4096:4096). The last two suit our machines: crun
# refuses their hybrid cgroup layout where runc does not (apt-get install runc), and podman as
# root asks for rlimits above the hard limits that the VM grants without CAP_SYS_RESOURCE.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-retrieval-svc:cpu}
GRPC_PORT=${GRPC_PORT:-50051}
METRICS_PORT=${METRICS_PORT:-9464}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}
read -r -a PODMAN <<< "${PODMAN:-podman --storage-driver vfs --runtime runc}"
read -r -a RUN_LIMITS <<< "${RUN_LIMITS:---ulimit nofile=16384:16384 --ulimit nproc=4096:4096}"
CLI=.venv/bin/retrieval-svc
PY=.venv/bin/python
TARGET=127.0.0.1:$GRPC_PORT

fail() { echo "image-smoke: FAIL: $*" >&2; exit 1; }
step() { echo "image-smoke: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ -x "$CLI" ] || fail "$CLI is missing (bash scripts/setup.sh)"
"${PODMAN[@]}" image exists "$IMAGE" || fail "no image $IMAGE in ${PODMAN[*]} (bash scripts/build-image.sh)"
for port in "$GRPC_PORT" "$METRICS_PORT"; do
    if [ -n "$(ss -Hltn "sport = :$port")" ]; then
        fail "port $port is in use on this host; choose GRPC_PORT / METRICS_PORT"
    fi
done

work=$(mktemp -d)
cid=
volume=
cleanup() {
    status=$?
    if [ -n "$cid" ]; then
        if [ $status != 0 ]; then
            echo "image-smoke: the container's last log lines:" >&2
            "${PODMAN[@]}" logs --tail 30 "$cid" >&2 2>&1 || true
        fi
        "${PODMAN[@]}" rm -f "$cid" >/dev/null 2>>"$work/podman.err" || true
    fi
    if [ -n "$volume" ]; then
        "${PODMAN[@]}" volume rm -f "$volume" >/dev/null 2>>"$work/podman.err" || true
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT

# A key made by this checkout's CLI (the same code as the image's `keys new`): the token stays in
# this process's environment; the mounted file holds only its hash, readable by uid 10001.
mkdir -m 0755 "$work/keys"
"$CLI" keys new --id smoke --role 'admin:*' > "$work/new-key" 2>/dev/null
RETRIEVAL_SVC_TOKEN=$(head -1 "$work/new-key")
{ echo 'keys:'; tail -n +2 "$work/new-key"; } > "$work/keys/keys.yaml"
rm "$work/new-key"
chmod 0644 "$work/keys/keys.yaml"

volume=$("${PODMAN[@]}" volume create "retrieval-smoke-$(basename "$work")")

step "starting $IMAGE (read-only root, /tmp tmpfs, 127.0.0.1:$GRPC_PORT and :$METRICS_PORT)"
started=$(now)
# podman without systemd cannot schedule the HEALTHCHECK's timer and says so on stderr; the
# check itself is run below with `podman healthcheck run`.
cid=$("${PODMAN[@]}" run -d "${RUN_LIMITS[@]}" --label retrieval-svc-smoke=1 \
        --read-only --read-only-tmpfs=false --tmpfs /tmp \
        -p "127.0.0.1:$GRPC_PORT:50051" -p "127.0.0.1:$METRICS_PORT:9464" \
        -v "$volume:/data" -v "$work/keys:/etc/retrieval-svc:ro" \
        "$IMAGE" 2>"$work/run.err") || { cat "$work/run.err" >&2; fail "podman run"; }
step "container ${cid:0:12} created in $(since "$started") s; waiting for its HEALTHCHECK"

until "${PODMAN[@]}" healthcheck run "$cid" >/dev/null 2>&1; do
    state=$("${PODMAN[@]}" inspect --format '{{.State.Status}}' "$cid")
    [ "$state" = running ] || fail "the container is $state before it became healthy"
    awk -v s="$(since "$started")" -v t="$HEALTH_TIMEOUT" 'BEGIN { exit !(s > t) }' \
        && fail "not healthy after $HEALTH_TIMEOUT s"
    sleep 1
done
step "healthy $(since "$started") s after podman run (HEALTHCHECK: grpc.health.v1 SERVING inside)"

# From outside, without a key: health is always open.
"$PY" - "$TARGET" <<'EOF' || fail "gRPC health from outside the container"
import sys, grpc
from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g
status = g.HealthStub(grpc.insecure_channel(sys.argv[1])).Check(h.HealthCheckRequest(), timeout=10).status
print("image-smoke: health from outside:", h.HealthCheckResponse.ServingStatus.Name(status), file=sys.stderr)
sys.exit(status != h.HealthCheckResponse.SERVING)
EOF

# Everything else needs the key: a search without one must be refused.
if env -u RETRIEVAL_SVC_TOKEN "$CLI" search tides --target "$TARGET" >/dev/null 2>"$work/noauth.err"; then
    fail "a search without an API key was answered"
fi
grep -q UNAUTHENTICATED "$work/noauth.err" || { cat "$work/noauth.err" >&2; fail "a search without a key failed, but not UNAUTHENTICATED"; }
step "search without a key: UNAUTHENTICATED"

export RETRIEVAL_SVC_TOKEN
"$CLI" ingest examples/sample.jsonl --quiet --target "$TARGET" --dead-letter "$work/dead-letter.jsonl" \
    > "$work/ingest.json" 2>"$work/ingest.err" || { cat "$work/ingest.err" >&2; fail "ingest"; }
"$PY" - "$work/ingest.json" examples/sample.jsonl <<'EOF' || fail "ingest summary"
import json, sys
summary = json.load(open(sys.argv[1]))
expected = sum(1 for line in open(sys.argv[2]) if line.strip())
committed = summary["added_document_count"] + summary["updated_document_count"] + summary["unchanged_document_count"]
print(f"image-smoke: ingest: {committed}/{expected} documents committed, {summary['rejected_document_count']} "
      f"rejected, {summary['embedded_chunk_count']} chunks embedded", file=sys.stderr)
sys.exit(not (summary["outcome"] == "completed" and committed == expected and summary["rejected_document_count"] == 0))
EOF

"$CLI" search tides --k 3 --json --target "$TARGET" > "$work/search.json" 2>"$work/search.err" \
    || { cat "$work/search.err" >&2; fail "search"; }
"$PY" - "$work/search.json" <<'EOF' || fail "search result"
import json, sys
response = json.load(open(sys.argv[1]))
hits = response.get("hits", [])
total = response.get("timings", {}).get("total")
print(f"image-smoke: search 'tides': top hit {hits[0]['doc_id'] if hits else None!r} of {len(hits)}"
      + (f", server total {total * 1000:.1f} ms" if total is not None else ""), file=sys.stderr)
sys.exit(not (hits and hits[0]["doc_id"] == "tides"))
EOF

"$PY" - "127.0.0.1:$METRICS_PORT" <<'EOF' || fail "metrics"
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode()
sys.exit('retrieval_requests_total{code="OK",rpc="Search"}' not in text)
EOF
step "metrics on 127.0.0.1:$METRICS_PORT count the search"

# The server is PID 1 in the container; on the host it is the container's init process.
pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$cid")
ids=$(awk '/^(Uid|Gid):/ { print $2, $3, $4, $5 }' "/proc/$pid/status" | tr '\n' ' ')
[ "$ids" = "10001 10001 10001 10001 10001 10001 10001 10001 " ] || fail "the server runs with uid/gid '$ids', not 10001"
step "server process: uid and gid 10001 ($(tr '\0' ' ' < "/proc/$pid/cmdline"))"
if "${PODMAN[@]}" exec "$cid" touch /opt/venv/smoke 2>/dev/null; then
    fail "the root filesystem is writable"
fi
step "root filesystem read-only"

stopping=$(now)
"${PODMAN[@]}" stop "$cid" >/dev/null 2>>"$work/podman.err"
code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$cid")
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
step "stopped in $(since "$stopping") s, exit code 0"
"${PODMAN[@]}" rm "$cid" >/dev/null 2>>"$work/podman.err"
cid=
echo "image-smoke: PASS ($IMAGE)" >&2
