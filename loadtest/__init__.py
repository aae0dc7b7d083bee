"""Open-loop load generation for retrieval-svc (RetrievalService.Search over grpc.aio).

    python -m loadtest --target 127.0.0.1:50051 --queries DIR_OR_FILE --rate 50 --duration 30 [--slo-p99-ms 250] \
        [--ingest CORPUS --ingest-rate 20]
    python -m loadtest.overload --beir /work/shared/data/scifact --max-docs 1000

Modules: `schedule` (arrival times), `driver` (the open-loop pacer and the
Search/BatchSearch caller), `queries` (query texts, qrels and the request-kind
mix), `quality` (nDCG@10 of sampled answers), `stats` (percentiles), `report`
(per-interval and overall summaries), `slo` (the PASS/FAIL verdict), `capacity`
(the highest rate meeting an SLO), `plot` (the PNG), `metrics` (Prometheus
counter deltas), `ingest` (IngestBatch calls at a fixed document rate beside the
searches, on a thread of their own) and `ingest_report` (what they did), `run`
(one measured run), `cli`, and `overload` (the overload benchmark).
"""
