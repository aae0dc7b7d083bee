#!/usr/bin/env bash
# The main job on the embedded default: start the server, ingest a sample, query it, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DATA=$(mktemp -d)
PORT=${PORT:-50051}
LOG="$DATA/server.log"
.venv/bin/retrieval-svc serve --data "$DATA/store" --port "$PORT" --metrics-port 0 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 120); do grep -q READY "$LOG" && break; kill -0 $SERVER || { cat "$LOG"; exit 1; }; sleep 0.5; done
grep READY "$LOG"
export RETRIEVAL_SVC_TARGET=127.0.0.1:$PORT
.venv/bin/retrieval-svc ingest examples/sample.jsonl --quiet
echo "--- re-ingest (unchanged: nothing embedded) ---"
.venv/bin/retrieval-svc ingest examples/sample.jsonl --quiet
echo "--- search ---"
.venv/bin/retrieval-svc search "how do I combine keyword and vector search results?" --k 3
.venv/bin/retrieval-svc search "bread fermentation" --k 2 --mode bm25 --filter topic=cooking
