"""Retrieval-quality evaluation: labeled query sets, trec_eval-compatible metrics, reports.

querysets (load and validate sets), metrics (metric registry, per query and per run),
stats (latency/staleness summaries), report (terminal table, Markdown + PNG report)
are pure; service runs sets through the pipeline and cli is `retrieval-svc eval`.
"""
