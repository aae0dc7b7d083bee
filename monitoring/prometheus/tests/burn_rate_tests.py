"""Writes slo-availability.test.yml and slo-latency.test.yml, the promtool unit tests
of the multi-window, multi-burn-rate alerts.

    python3 monitoring/prometheus/tests/burn_rate_tests.py          # rewrite both
    python3 monitoring/prometheus/tests/burn_rate_tests.py --check  # exit 1 if stale

The two SLOs share eight alerting rules' worth of structure and ~20 scenarios
each, which is too much to keep consistent by hand. Each scenario is a traffic
shape (failing or slow requests per minute, in segments); this script computes
every window's ratio from the shape, straight from the SLO definition (a window
longer than the data sees all of it), and from those the alerts that must fire.
promtool then checks the rules against that independent computation. Where a
scenario also states the alerts it expects, the computation must agree.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = "retrieval-svc"
TOTAL = 1000  # requests a minute in every scenario

WINDOW_MINUTES = {"5m": 5, "30m": 30, "1h": 60, "2h": 120, "6h": 360, "1d": 1440, "3d": 4320}
# (long window, short window, burn rate, severity, share of a 30-day budget spent
#  in the long window at that burn rate): Google SRE workbook, ch. 5.
BURN_RULES = [
    ("1h", "5m", 14.4, "page", "2%"),
    ("6h", "30m", 6, "page", "5%"),
    ("1d", "2h", 3, "ticket", "10%"),
    ("3d", "6h", 1, "ticket", "10%"),
]

SLOS = {
    "availability": dict(
        budget=0.001, alert="RetrievalAvailabilityBudgetBurn", record="job:retrieval_search_errors",
        anchor="retrievalavailabilitybudgetburn", unit="bad", scale=1,
        summary="{job}: {value} of Search/BatchSearch RPCs failed over the last {lw}",
        description=(
            "Server-side failures of Search/BatchSearch are spending the error budget of the 99.9% "
            "availability SLO at more than {b} the sustainable rate over both {lw} and {sw} "
            "({b} for {lw} spends {spent} of the 30-day budget)."
        ),
    ),
    "latency": dict(
        budget=0.01, alert="RetrievalLatencyBudgetBurn", record="job:retrieval_search_slow",
        anchor="retrievallatencybudgetburn", unit="slow", scale=10,
        summary="{job}: {value} of searches took longer than 250 ms over the last {lw}",
        description=(
            "Slow searches are spending the error budget of the latency SLO (99% of searches within "
            "250 ms) at more than {b} the sustainable rate over both {lw} and {sw} "
            "({b} for {lw} spends {spent} of the 30-day budget)."
        ),
    ),
}

# Scenarios at availability scale (bad requests a minute out of 1000; latency
# multiplies by 10): (name, [(minutes, bad per minute), ...], evaluation minute,
# windows whose recorded ratio to check, long windows of the alerts expected).
# Steady scenarios sit 10-20% over one threshold.
STEADY = [
    ("{1.6%} {unit}: all four windows fire", [(60, 16)], 60, ["5m", "1h", "3d"], ["1h", "6h", "1d", "3d"]),
    ("{0.7%} {unit}: the 6x page and both tickets, not the 14.4x page", [(60, 7)], 60, ["30m", "6h"],
     ["6h", "1d", "3d"]),
    ("{0.35%} {unit}: both tickets only", [(60, 3.5)], 60, ["2h", "1d"], ["1d", "3d"]),
    ("{0.12%} {unit}: only the 1x ticket", [(60, 1.2)], 60, [], ["3d"]),
    ("{0.05%} {unit}: within budget, quiet", [(60, 0.5)], 60, ["1h"], []),
]
# Failing codes of the steady availability scenarios, in order: every server-side
# code the service returns is exercised once.
STEADY_CODES = [("Search", "INTERNAL"), ("BatchSearch", "DEADLINE_EXCEEDED"), ("Search", "UNAVAILABLE"),
                ("BatchSearch", "RESOURCE_EXHAUSTED"), ("Search", "UNKNOWN")]
# One window of a pair 5-20% under its threshold, the other well over it.
BOUNDARY = [
    ("14.4x page: 1h window below", [(55, 11), (5, 30)], 60, ["1h", "5m"], ["6h", "1d", "3d"]),
    ("14.4x page: 5m window below", [(55, 25), (5, 12)], 60, ["1h", "5m"], ["6h", "1d", "3d"]),
    ("6x page: 6h window below", [(30, 0), (30, 10)], 60, ["6h", "30m"], ["1d", "3d"]),
    ("6x page: 30m window below", [(30, 10), (30, 5)], 60, ["6h", "30m"], ["1d", "3d"]),
    ("3x ticket: 1d window below", [(60, 0), (120, 4)], 180, ["1d", "2h"], ["3d"]),
    ("3x ticket: 2h window below", [(60, 6), (120, 2.5)], 180, ["1d", "2h"], ["3d"]),
    ("1x ticket: 3d window below", [(60, 0), (360, 1.1)], 420, ["3d", "6h"], []),
    ("1x ticket: 6h window below", [(60, 3), (360, 0.8)], 420, ["3d", "6h"], []),
]
RECOVERY = [
    # The 1h window still sees 1.67% (over 1.44%) at 70m.
    ("Recovery: 10m after an hour at {2%} {unit}, the 5m window stops the 14.4x page",
     [(60, 20), (10, 0)], 70, ["1h", "5m"], ["6h", "1d", "3d"]),
    # The 1d window still sees 0.6% (over 0.3%) at 200m.
    ("Recovery: 140m after an hour at {2%} {unit}, the 2h window stops the 3x ticket",
     [(60, 20), (140, 0)], 200, ["1d", "2h"], ["3d"]),
]


# --- arithmetic -------------------------------------------------------------------------


def fmt(x: float) -> str:
    return ("%.6f" % x).rstrip("0").rstrip(".")


def bad_until(segments, minute: int) -> float:
    total, elapsed = 0.0, 0
    for minutes, per_minute in segments:
        total += min(minutes, max(0, minute - elapsed)) * per_minute
        elapsed += minutes
    return total


def window_ratio(segments, minute: int, window: str) -> float:
    start = max(0, minute - WINDOW_MINUTES[window])
    return (bad_until(segments, minute) - bad_until(segments, start)) / (TOTAL * (minute - start))


def firing(segments, minute: int, budget: float) -> list[tuple[str, str]]:
    """(long window, summary value) of each burn-rate rule over its threshold on both windows."""
    out = []
    for long, short, burn, _, _ in BURN_RULES:
        if all(window_ratio(segments, minute, w) > burn * budget for w in (long, short)):
            # humanizePercentage is Go's %.4g of the value * 100.
            out.append((long, "%.4g%%" % (window_ratio(segments, minute, long) * 100)))
    return out


def prom_round(x: float) -> float:
    """PromQL round(x, 0.0001): floor(x * 10000 + 0.5) / 10000."""
    return math.floor(x * 10000 + 0.5) / 10000


def counter(segments) -> str:
    """promtool series notation of a counter growing by `per_minute` in each segment."""
    parts, value = [], 0.0
    for i, (minutes, per_minute) in enumerate(segments):
        if i == 0:
            parts.append(f"0+{fmt(per_minute)}x{minutes}")
        else:
            parts.append(f"{fmt(value + per_minute)}+{fmt(per_minute)}x{minutes - 1}")
        value += per_minute * minutes
    return " ".join(parts)


# --- YAML ---------------------------------------------------------------------------------


def series(name: str, labels: list[tuple[str, str]], values: str) -> str:
    label_text = ", ".join([f'job="{JOB}"'] + [f'{k}="{v}"' for k, v in labels])
    return f"      - series: '{name}{{{label_text}}}'\n        values: '{values}'\n"


def traffic(slo: str, segments, rpc_code=("Search", "INTERNAL")) -> str:
    good = [(m, TOTAL - b) for m, b in segments]
    if slo == "availability":
        rpc, code = rpc_code
        return (series("retrieval_requests_total", [("rpc", rpc), ("code", "OK")], counter(good))
                + series("retrieval_requests_total", [("rpc", rpc), ("code", code)], counter(segments)))
    minutes = sum(m for m, _ in segments)
    return (series("retrieval_stage_duration_seconds_count", [("stage", "total"), ("mode", "hybrid")],
                   f"0+{TOTAL}x{minutes}")
            + series("retrieval_stage_duration_seconds_bucket",
                     [("stage", "total"), ("mode", "hybrid"), ("le", "0.25")], counter(good)))


def alert_check(slo: str, minute: int, alerts: list[tuple[str, str]]) -> str:
    spec = SLOS[slo]
    out = f"      - eval_time: {minute}m\n        alertname: {spec['alert']}\n"
    if alerts:
        out += "        exp_alerts:\n"
    for long, value in alerts:
        _, short, burn, severity, spent = next(r for r in BURN_RULES if r[0] == long)
        burn_text = f"{burn:g}x"
        summary = spec["summary"].format(job=JOB, value=value, lw=long)
        description = spec["description"].format(b=burn_text, lw=long, sw=short, spent=spent)
        out += f"""          - exp_labels:
              job: {JOB}
              severity: {severity}
              slo: {slo}
              long_window: {long}
              short_window: {short}
            exp_annotations:
              summary: "{summary}"
              description: "{description}"
              runbook_url: docs/runbooks.md#{spec['anchor']}
"""
    return out


def ratio_check(slo: str, window: str, minute: int, value: float) -> str:
    return f"""      - expr: round({SLOS[slo]['record']}:ratio_rate{window}, 0.0001)
        eval_time: {minute}m
        exp_samples:
          - labels: '{{job="{JOB}"}}'
            value: {fmt(prom_round(value))}
"""


def test_case(name: str, series_text: str, alerts_text: str, exprs_text: str = "", comment: str = "") -> str:
    out = "".join(f"  # {line}\n" for line in comment.splitlines())
    out += f'  - name: "{name}"\n    interval: 1m\n    input_series:\n{series_text}'
    if exprs_text:
        out += "    promql_expr_test:\n" + exprs_text
    return out + "    alert_rule_test:\n" + alerts_text + "\n"


def scenario(slo: str, name: str, segments, minute: int, windows, expect, comment: str = "", **kw) -> str:
    spec = SLOS[slo]
    segments = [(m, b * spec["scale"]) for m, b in segments]
    alerts = firing(segments, minute, spec["budget"])
    if [long for long, _ in alerts] != expect:
        raise AssertionError(f"{slo} {name!r}: computed {alerts}, stated {expect}")
    name = name.replace("{unit}", spec["unit"])
    for pct in ("2%", "1.6%", "0.7%", "0.35%", "0.12%", "0.05%"):
        name = name.replace("{%s}" % pct, "%g%%" % (float(pct[:-1]) * spec["scale"]))
    exprs = "".join(ratio_check(slo, w, minute, window_ratio(segments, minute, w)) for w in windows)
    return test_case(name, traffic(slo, segments, **kw), alert_check(slo, minute, alerts), exprs, comment)


def shape(slo: str, segments, minute: int) -> str:
    unit, scale = SLOS[slo]["unit"], SLOS[slo]["scale"]
    text = ", then ".join(f"{m}m at {b * scale:g} {unit}/min" for m, b in segments)
    ratios = ", ".join(f"{w} {window_ratio([(m, b * scale) for m, b in segments], minute, w) * 100:.4g}%"
                       for w in WINDOW_MINUTES)
    return f"{text}; at {minute}m: {ratios}"


HEADER = {
    "availability": """\
# promtool unit tests for the availability SLO (99.9% of Search/BatchSearch RPCs
# succeed over 30 days) and its multi-window, multi-burn-rate alerts.
# GENERATED by burn_rate_tests.py: edit that and re-run it, not this file.
# Run: promtool test rules monitoring/prometheus/tests/*.yml
#
# Traffic is 1000 RPCs a minute from t=0; "bad" counts failed RPCs a minute.
# Burn-rate thresholds on the failure ratio (error budget 0.1%):
#   1h/5m > 1.44% (14.4x, page)   6h/30m > 0.6% (6x, page)
#   1d/2h > 0.3%  (3x, ticket)    3d/6h  > 0.1% (1x, ticket)
""",
    "latency": """\
# promtool unit tests for the latency SLO (99% of searches finish within 250 ms
# over 30 days) and its multi-window, multi-burn-rate alerts.
# GENERATED by burn_rate_tests.py: edit that and re-run it, not this file.
# Run: promtool test rules monitoring/prometheus/tests/*.yml
#
# 1000 searches a minute from t=0; "slow" counts searches a minute over 250 ms
# (retrieval_stage_duration_seconds_count minus its le="0.25" bucket, stage="total").
# Burn-rate thresholds on the slow ratio (error budget 1%):
#   1h/5m > 14.4% (14.4x, page)   6h/30m > 6% (6x, page)
#   1d/2h > 3%    (3x, ticket)    3d/6h  > 1% (1x, ticket)
""",
}
COMMON_HEADER = """\
# A window longer than the data sees the ratio over all the data (rate() divides
# both counters by the same range). Each alert test lists every alert that must
# fire; promtool fails on any other, so each test also checks which stay quiet.
# The steady tests sit 10-20% over a threshold; the "... window below" tests put
# one window of a pair 5-20% under its threshold while the other is well over it,
# so a threshold that is off by 30% on either window fails a test. Recorded ratios
# are compared after round(..., 0.0001): promtool compares floats exactly.

rule_files:
  - ../rules/retrieval-slo.rules.yml

# Samples are a minute apart; rules are evaluated every 5 minutes to keep the
# long scenarios fast (burn-rate alerts have no `for`, so the grid does not matter
# as long as every eval_time is on it).
evaluation_interval: 5m

tests:
"""


def availability_extras() -> str:
    slo = "availability"
    client = [("Search", "OK", 500), ("Search", "INVALID_ARGUMENT", 200), ("Search", "NOT_FOUND", 100),
              ("BatchSearch", "FAILED_PRECONDITION", 100), ("Search", "CANCELLED", 100),
              ("Ingest", "INTERNAL", 1000), ("Info", "UNAVAILABLE", 1000)]
    return (
        test_case(
            "Client errors and other RPCs do not count: quiet, ratio 0",
            "".join(series("retrieval_requests_total", [("rpc", r), ("code", c)], f"0+{n}x60") for r, c, n in client),
            alert_check(slo, 60, []),
            ratio_check(slo, "5m", 60, 0) + ratio_check(slo, "3d", 60, 0))
        + test_case(
            "No Search traffic: ratios absent, quiet",
            series("retrieval_requests_total", [("rpc", "Ingest"), ("code", "OK")], "0+10x60"),
            alert_check(slo, 60, []),
            "      - expr: job:retrieval_search_errors:ratio_rate1h\n"
            "        eval_time: 60m\n"
            "        exp_samples: []\n")
    )


def latency_extras() -> str:
    slo = "latency"

    def hist(stage, mode, count, fast):
        return (series("retrieval_stage_duration_seconds_count", [("stage", stage), ("mode", mode)], count)
                + series("retrieval_stage_duration_seconds_bucket",
                         [("stage", stage), ("mode", mode), ("le", "0.25")], fast))

    return (
        test_case(
            "Slow stages other than total do not count: quiet",
            hist("total", "hybrid", "0+600x60", "0+600x60") + hist("total", "dense", "0+400x60", "0+396x60")
            + hist("rerank", "hybrid", "0+1000x60", "0+0x60"),
            alert_check(slo, 60, []),
            ratio_check(slo, "5m", 60, 0.004) + ratio_check(slo, "3d", 60, 0.004),
            comment="Modes are summed: (0 + 4) slow of (600 + 400) = 0.4%.")
        + test_case(
            "No searches: ratios are 0/0 = NaN, quiet",
            hist("total", "hybrid", "0x60", "0x60"),
            alert_check(slo, 60, []),
            "      # Only NaN is not equal to itself.\n"
            "      - expr: count(job:retrieval_search_slow:ratio_rate1h != job:retrieval_search_slow:ratio_rate1h)\n"
            "        eval_time: 60m\n"
            "        exp_samples:\n"
            "          - labels: '{}'\n"
            "            value: 1\n")
    )


def render() -> dict[Path, str]:
    files = {}
    for slo in SLOS:
        text = HEADER[slo] + COMMON_HEADER
        for (name, segments, minute, windows, expect), (rpc, code) in zip(STEADY, STEADY_CODES):
            if slo == "availability":
                text += scenario(slo, name, segments, minute, windows, expect,
                                 comment=f"Failing code: {code} on {rpc}.", rpc_code=(rpc, code))
            else:
                text += scenario(slo, name, segments, minute, windows, expect)
        for name, segments, minute, windows, expect in BOUNDARY + RECOVERY:
            text += scenario(slo, name, segments, minute, windows, expect,
                             comment=shape(slo, segments, minute))
        text += availability_extras() if slo == "availability" else latency_extras()
        files[HERE / f"slo-{slo}.test.yml"] = text.rstrip("\n") + "\n"
    return files


def main(argv: list[str]) -> int:
    stale = []
    for path, text in render().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python3 {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
