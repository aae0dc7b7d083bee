"""Evaluation results as a terminal table, a Markdown report and PNG plots.

The result dict is what `EvaluationRunner.evaluate` returns and what
``retrieval-svc eval --json`` writes (times in seconds, instants in POSIX
seconds, UTC)::

    {
      "query_set": "scifact",
      "queries_evaluated": 300,     # queries with at least one relevant judgement
      "queries_skipped": 0,         # queries without one: not in any average
      "started_at": 1732435200.0,   # POSIX seconds
      "duration_seconds": 41.2,
      "stages": [                   # in the order they ran
        {
          "stage": "dense",         # dense | bm25 | fused | reranked
          "metrics": [              # means over the evaluated queries
            {"metric": "ndcg", "k": 10, "value": 0.645},
            {"metric": "map", "k": 0, "value": 0.598}      # k = 0: no cut-off
          ],
          "latency": {"count": 300, "p50": 0.012, "p90": 0.018, "p99": 0.031,
                      "mean": 0.013, "max": 0.044,
                      "samples": [0.011, ...]},           # optional, one per query
          "staleness": {"count": 3000, "p50": 86400.0, "p90": ..., "max": ...},
          "mean_timings": {"encode": 0.004, "dense": 0.001},  # optional
          "rerank_fallbacks": 0
        }
      ],
      "per_query": [                # optional (empty unless asked for)
        {"query_id": "1", "stage": "dense",
         "metrics": {"ndcg@10": 1.0, "map": 1.0},
         "latency_seconds": 0.012, "retrieved": ["31715818", ...]}
      ]
    }

"count" is optional (the gRPC response does not carry it). Summary keys may
also be spelled with a ``_seconds`` suffix (``p50_seconds``), as in the proto;
readers here accept both. Latency samples come from ``latency.samples`` or,
without them, from the per-query rows of the stage.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Sequence

_METRIC_ORDER = ("ndcg", "mrr", "map", "recall", "precision", "hit_rate")


def _metric_label(metric: str, k: int) -> str:
    return f"{metric}@{k}" if k else metric


def _metric_columns(result: dict) -> list[tuple[str, int]]:
    """(metric, k) pairs of every stage, known metrics first, then by k."""
    seen = {(m["metric"], int(m.get("k") or 0)) for s in result.get("stages", []) for m in s.get("metrics", [])}

    def order(pair: tuple[str, int]) -> tuple[int, str, int]:
        metric, k = pair
        rank = _METRIC_ORDER.index(metric) if metric in _METRIC_ORDER else len(_METRIC_ORDER)
        return rank, metric, k

    return sorted(seen, key=order)


def _metric_value(stage: dict, metric: str, k: int) -> float | None:
    for m in stage.get("metrics", []):
        if m["metric"] == metric and int(m.get("k") or 0) == k:
            return float(m["value"])
    return None


def _summary(summary: dict | None, key: str) -> float | None:
    if not summary:
        return None
    value = summary.get(key, summary.get(f"{key}_seconds"))
    return None if value is None else float(value)


def _latency_samples(result: dict, stage: dict) -> list[float]:
    samples = (stage.get("latency") or {}).get("samples")
    if samples:
        return [float(s) for s in samples]
    return [float(row["latency_seconds"]) for row in result.get("per_query", [])
            if row.get("stage") == stage["stage"] and "latency_seconds" in row]


def _fmt(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


# --- tables ----------------------------------------------------------------------


def _metric_table(result: dict) -> tuple[list[str], list[list[str]]]:
    stages = result.get("stages", [])
    headers = ["metric", "k"] + [s["stage"] for s in stages]
    rows = [[metric, str(k) if k else "-"] + [_fmt(_metric_value(s, metric, k), 4) for s in stages]
            for metric, k in _metric_columns(result)]
    return headers, rows


def _latency_table(result: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["stage", "queries", "p50 ms", "p90 ms", "p99 ms", "mean ms", "max ms", "rerank fallbacks"]
    rows = []
    for s in result.get("stages", []):
        latency = s.get("latency") or {}
        count = latency.get("count", len(_latency_samples(result, s)) or None)
        rows.append([s["stage"], "-" if count is None else str(int(count))]
                    + [_fmt(_summary(latency, key), 2, 1000.0) for key in ("p50", "p90", "p99", "mean", "max")]
                    + [str(s.get("rerank_fallbacks", 0))])
    return headers, rows


def _staleness_table(result: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["stage", "p50 s", "p90 s", "max s"]
    rows = [[s["stage"]] + [_fmt(_summary(s.get("staleness"), key), 1) for key in ("p50", "p90", "max")]
            for s in result.get("stages", [])]
    return headers, rows


def _timings_table(result: dict) -> tuple[list[str], list[list[str]]] | None:
    stages = [s for s in result.get("stages", []) if s.get("mean_timings")]
    if not stages:
        return None
    names = list(dict.fromkeys(name for s in stages for name in s["mean_timings"]))
    headers = ["timing (mean ms)"] + [s["stage"] for s in stages]
    rows = [[name] + [_fmt(s["mean_timings"].get(name), 2, 1000.0) for s in stages] for name in names]
    return headers, rows


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(row) for row in rows])


def _started(result: dict) -> str:
    started_at = result.get("started_at")
    if isinstance(started_at, (int, float)) and started_at:
        return dt.datetime.fromtimestamp(started_at, tz=dt.timezone.utc).isoformat(timespec="seconds")
    return str(started_at or "-")


def _headline(result: dict) -> str:
    return (f"query set {result.get('query_set', '?')}: {result.get('queries_evaluated', 0)} queries evaluated, "
            f"{result.get('queries_skipped', 0)} skipped (no relevant judgement); "
            f"started {_started(result)}, took {float(result.get('duration_seconds') or 0):.1f} s")


def format_table(result: dict) -> str:
    """The result as plain-text tables for a terminal: metrics by stage, latency, staleness."""
    parts = [_headline(result), "", _plain(*_metric_table(result)), "", _plain(*_latency_table(result)),
             "", "staleness of served hits", _plain(*_staleness_table(result))]
    return "\n".join(parts)


# --- report ----------------------------------------------------------------------


def write_report(result: dict, out_dir: Path) -> Path:
    """Writes report.md, metrics_by_stage.png and latency.png into out_dir; returns report.md's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_metrics(result, out_dir / "metrics_by_stage.png")
    _plot_latency(result, out_dir / "latency.png")
    sections = [
        f"# Retrieval evaluation: {result.get('query_set', '?')}",
        _headline(result) + ".",
        "Metrics are means over the evaluated queries (trec_eval semantics: relevant = relevance > 0; "
        "see protos/retrieval/v1/evaluation.proto).",
        "## Quality by stage",
        _markdown(*_metric_table(result)),
        "![metrics by stage](metrics_by_stage.png)",
        "## Latency per query",
        _markdown(*_latency_table(result)),
        "![latency by stage](latency.png)",
    ]
    timings = _timings_table(result)
    if timings is not None:
        sections += ["## Mean time per pipeline stage", _markdown(*timings)]
    sections += ["## Staleness of served hits", "Age of each returned hit (now - source_updated_at).",
                 _markdown(*_staleness_table(result))]
    path = out_dir / "report.md"
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return path


def _figure(width: float, height: float) -> Any:
    # A Figure with its own Agg canvas: no pyplot, so no global backend state
    # and nothing that needs a display, safe inside the server process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_metrics(result: dict, path: Path) -> None:
    """Grouped bars: one group per metric@k, one bar per stage."""
    stages = result.get("stages", [])
    columns = _metric_columns(result)
    figure = _figure(max(6.0, 0.25 * len(columns) * max(1, len(stages)) + 2), 4.5)
    ax = figure.add_subplot()
    if not columns:
        ax.text(0.5, 0.5, "no metrics", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        width = 0.8 / len(stages)
        for i, stage in enumerate(stages):
            values = [_metric_value(stage, metric, k) or 0.0 for metric, k in columns]
            ax.bar([c + (i - (len(stages) - 1) / 2) * width for c in range(len(columns))], values, width,
                   label=stage["stage"])
        ax.set_xticks(range(len(columns)), [_metric_label(m, k) for m, k in columns], rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("mean over queries")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="stage")
    ax.set_title(f"Retrieval quality by stage: {result.get('query_set', '?')}")
    figure.savefig(path)


def _plot_latency(result: dict, path: Path) -> None:
    """Box plot of per-query latency by stage; percentile bars when no samples were kept."""
    stages = result.get("stages", [])
    samples = [_latency_samples(result, s) for s in stages]
    figure = _figure(max(6.0, 1.5 * len(stages) + 2), 4.5)
    ax = figure.add_subplot()
    labels = [s["stage"] for s in stages]
    if stages and all(samples):
        ax.boxplot([[v * 1000 for v in stage_samples] for stage_samples in samples], whis=(5, 95))
        ax.set_xticks(range(1, len(labels) + 1), labels)
        ax.set_ylabel("ms per query")
        ax.set_title("box: quartiles and median; whiskers: p5-p95", fontsize="small")
        lowest, highest = min(min(s) for s in samples), max(max(s) for s in samples)
        if lowest > 0 and highest / lowest > 20:
            ax.set_yscale("log")  # BM25 (~ms) and re-ranking (~100 ms) on one readable axis
    elif stages:
        keys = ("p50", "p90", "p99")
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            values = [(_summary(s.get("latency"), key) or 0.0) * 1000 for s in stages]
            ax.bar([c + (i - 1) * width for c in range(len(stages))], values, width, label=key)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("ms per query")
        ax.legend(title="percentile")
    else:
        ax.text(0.5, 0.5, "no stages", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Latency by stage: {result.get('query_set', '?')}")
    figure.savefig(path)
