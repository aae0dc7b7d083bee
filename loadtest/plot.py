"""A PNG of one run, per interval: offered vs achieved rate, OK latency p50/p95/p99,
refusals, (with qrels) the mean sampled nDCG@10 and, where an ingest ran beside the
searches, its offered vs committed documents/s with the OK batches' p99. Drawn on
matplotlib's Agg canvas without pyplot: no display, no global backend state."""

from __future__ import annotations

from pathlib import Path

from loadtest.report import RunReport


def write_plot(report: RunReport, path: str | Path, title: str = "") -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    windows = report.intervals
    t = [(w.start + w.end) / 2 for w in windows]
    ingest = report.ingest
    figure = Figure(figsize=(9, 10 if ingest is None else 12.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(4 if ingest is None else 5, 1, sharex=True))
    rate_ax, latency_ax, refused_ax, ndcg_ax = axes[:4]

    rate_ax.plot(t, [w.offered_rate for w in windows], marker=".", linestyle="--", label="offered")
    rate_ax.plot(t, [w.achieved_rate for w in windows], marker=".", label="achieved (OK answers)")
    rate_ax.set_ylabel("requests/s")
    rate_ax.legend(loc="best")

    for name in ("p50", "p95", "p99"):
        latency_ax.plot(t, [getattr(w.ok_latency, name) * 1000 for w in windows], marker=".", label=name)
    latency_ax.set_ylabel("OK latency, ms")
    latency_ax.legend(loc="best")

    width = (windows[0].end - windows[0].start) * 0.8 if windows else 1.0
    refused_ax.bar(t, [w.refused for w in windows], width=width, label="refused (RESOURCE_EXHAUSTED/UNAVAILABLE)")
    refused_ax.plot(t, [w.offered - w.ok - w.refused for w in windows], color="tab:red", marker="x",
                    linestyle="none", label="other errors")
    refused_ax.set_ylabel("requests")
    refused_ax.legend(loc="best")

    if report.quality:
        ndcg_ax.plot(t, [w.ndcg_mean for w in windows], marker="o", label="mean nDCG@10 (sampled)")
        ndcg_ax.set_ylim(0, 1.05)
        ndcg_ax.legend(loc="best")
    else:
        ndcg_ax.text(0.5, 0.5, "no qrels: quality not sampled", ha="center", va="center",
                     transform=ndcg_ax.transAxes)
    ndcg_ax.set_ylabel("nDCG@10")
    if ingest is not None:
        ingest_ax = axes[4]
        ti = [(w.start + w.end) / 2 for w in ingest.intervals]
        ingest_ax.plot(ti, [w.offered_rate for w in ingest.intervals], marker=".", linestyle="--",
                       label="ingest offered docs/s")
        ingest_ax.plot(ti, [w.committed_rate for w in ingest.intervals], marker=".", label="committed docs/s")
        ingest_ax.set_ylabel("documents/s")
        ingest_ax.set_ylim(bottom=0)
        ingest_ax.legend(loc="upper left")
        batch_ax = ingest_ax.twinx()
        batch_ax.plot(ti, [w.ok_latency.p99 * 1000 for w in ingest.intervals], color="tab:purple", marker="x",
                      linestyle=":", label="OK batch p99 ms")
        batch_ax.set_ylabel("batch p99, ms")
        batch_ax.set_ylim(bottom=0)
        batch_ax.legend(loc="upper right")
    axes[-1].set_xlabel("s from the start (by intended send time; achieved by answer time)")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in (rate_ax, latency_ax, refused_ax):
        ax.set_ylim(bottom=0)
    figure.suptitle(title or f"{report.target}: {report.arrival} {report.rate:g} req/s, mix {report.mix}"
                    + ("" if ingest is None else f", beside an ingest of {ingest.rate:g} docs/s"))
    figure.savefig(out, format="png")
    return out
