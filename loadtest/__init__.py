"""Open-loop load generation for retrieval-svc (RetrievalService.Search over grpc.aio).

    python -m loadtest --target 127.0.0.1:50051 --queries DIR_OR_FILE --rate 50 --duration 30
    python -m loadtest.overload --beir /work/shared/data/scifact --max-docs 1000

Modules: `schedule` (arrival times), `driver` (the open-loop pacer and the
Search caller), `queries` (query texts and the mode mix), `stats`
(percentiles), `report` (per-interval and overall summaries), `metrics`
(Prometheus counter deltas), `run` (one measured run), `cli`, and `overload`
(the capacity and overload benchmark).
"""
