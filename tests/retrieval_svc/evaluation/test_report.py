"""Report: Markdown tables, PNG plots and the terminal table from a result dict."""

from __future__ import annotations

import struct
import zlib

import pytest

from retrieval_svc.evaluation.report import format_table, write_report
from retrieval_svc.evaluation.stats import summarize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _stage(name, offset, latencies):
    metrics = [{"metric": m, "k": k, "value": round(0.1 * i + 0.01 * k + offset, 4)}
               for i, m in enumerate(("precision", "recall", "ndcg", "mrr", "hit_rate")) for k in (1, 5, 10)]
    return {
        "stage": name,
        "metrics": metrics + [{"metric": "map", "k": 0, "value": 0.5 + offset}],
        "latency": {**summarize(latencies), "samples": latencies},
        "staleness": summarize([60.0, 3600.0, 86400.0]),
        "mean_timings": {"encode": 0.004, name: 0.002},
        "rerank_fallbacks": 2 if name == "reranked" else 0,
    }


def make_result():
    return {
        "query_set": "tiny",
        "queries_evaluated": 4,
        "queries_skipped": 1,
        "started_at": 1_732_435_200.0,
        "duration_seconds": 1.25,
        "stages": [_stage("dense", 0.0, [0.010, 0.012, 0.020, 0.050]),
                   _stage("bm25", 0.05, [0.002, 0.003, 0.004, 0.009]),
                   _stage("reranked", 0.1, [0.110, 0.120, 0.150, 0.400])],
        "per_query": [{"query_id": "q1", "stage": "dense", "metrics": {"ndcg@10": 1.0, "map": 1.0},
                       "latency_seconds": 0.01, "retrieved": ["d1", "d2"]}],
    }


def assert_png(path):
    """A real PNG: signature, an IHDR chunk with a valid CRC and non-zero size, and an IEND."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    (crc,) = struct.unpack(">I", data[16 + length:20 + length])
    assert crc == zlib.crc32(data[12:16 + length])
    assert data.endswith(b"IEND\xaeB`\x82")


def test_write_report_writes_markdown_and_pngs(tmp_path):
    out = tmp_path / "out" / "nested"
    path = write_report(make_result(), out)
    assert path == out / "report.md"
    assert_png(out / "metrics_by_stage.png")
    assert_png(out / "latency.png")

    text = path.read_text()
    assert "# Retrieval evaluation: tiny" in text
    assert "4 queries evaluated, 1 skipped" in text and "2024-11-24T08:00:00+00:00" in text
    assert "| metric | k | dense | bm25 | reranked |" in text
    assert "| ndcg | 10 | 0.3000 | 0.3500 | 0.4000 |" in text
    assert "| precision | 5 | 0.0500 | 0.1000 | 0.1500 |" in text
    assert "| map | - | 0.5000 | 0.5500 | 0.6000 |" in text
    # ndcg rows come first, then by k.
    assert (text.index("| ndcg | 1 |") < text.index("| ndcg | 5 |") < text.index("| ndcg | 10 |")
            < text.index("| mrr | 1 |"))
    # latency in ms: dense p50 of [10, 12, 20, 50] ms is 16 ms; max 50 ms.
    assert "| dense | 4 | 16.00 |" in text and "| 50.00 | 0 |" in text
    assert "| reranked | 4 | 135.00 | 325.00 | 392.50 | 195.00 | 400.00 | 2 |" in text
    assert "| stage | p50 s | p90 s | max s |" in text and "| dense | 3600.0 |" in text
    assert "![metrics by stage](metrics_by_stage.png)" in text and "![latency by stage](latency.png)" in text


def test_report_from_the_grpc_shaped_result_without_samples_or_counts(tmp_path):
    # The CLI's result from an EvaluateResponse: no counts, no samples, proto-style key spelling allowed.
    result = make_result()
    for stage in result["stages"]:
        latency = stage["latency"]
        stage["latency"] = {f"{key}_seconds": latency[key] for key in ("p50", "p90", "p99", "mean", "max")}
        del stage["mean_timings"]
    result["per_query"] = []
    path = write_report(result, tmp_path)
    assert_png(tmp_path / "latency.png")  # percentile bars instead of a box plot
    assert "| dense | - | 16.00 |" in path.read_text()
    assert "Mean time per pipeline stage" not in path.read_text()


def test_report_of_an_empty_result_still_writes_every_file(tmp_path):
    result = {"query_set": "empty", "queries_evaluated": 0, "queries_skipped": 3, "started_at": 0,
              "duration_seconds": 0.0, "stages": [], "per_query": []}
    write_report(result, tmp_path)
    assert_png(tmp_path / "metrics_by_stage.png")
    assert_png(tmp_path / "latency.png")
    assert "| metric | k |" in (tmp_path / "report.md").read_text()
    assert "0 queries evaluated, 3 skipped" in format_table(result)


def test_missing_metric_in_a_stage_shows_a_dash(tmp_path):
    result = make_result()
    result["stages"][1]["metrics"] = [m for m in result["stages"][1]["metrics"] if m["metric"] != "map"]
    assert "| map | - | 0.5000 | - | 0.6000 |" in write_report(result, tmp_path).read_text()


def test_format_table_is_aligned_plain_text():
    table = format_table(make_result())
    assert "|" not in table
    lines = table.splitlines()
    assert lines[0].startswith("query set tiny: 4 queries evaluated, 1 skipped")
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split() == ["metric", "k", "dense", "bm25", "reranked"]
    ndcg10 = next(line for line in lines if line.startswith("ndcg ") and line.split()[1] == "10")
    assert ndcg10.split() == ["ndcg", "10", "0.3000", "0.3500", "0.4000"]
    # Right-aligned numbers: the value columns end at the same offset as their headers.
    assert len(ndcg10) == len(header)
    assert any(line.split()[:3] == ["dense", "4", "16.00"] for line in lines)


@pytest.mark.parametrize("started_at", ["2024-11-24T08:00:00Z", None])
def test_started_at_may_be_a_string_or_missing(started_at):
    result = make_result()
    result["started_at"] = started_at
    assert f"started {started_at or '-'}" in format_table(result)
