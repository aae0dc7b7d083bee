"""Scrape the server's Prometheus endpoint before and after a run and report counter deltas.

Counters read:
- ``retrieval_requests_total{rpc, code}``: RPCs the server finished, by status code
  (what the server believes it answered; compare with what the client saw);
- ``retrieval_deadline_overruns_total``: work the server finished after its
  caller's deadline had passed. Newer servers only; reported as None ("n/a")
  when the server does not export it.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "retrieval_requests_total"
OVERRUNS = "retrieval_deadline_overruns_total"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Scrape:
    """Samples: (sample name, sorted labels) -> value. `declared`: sample names the
    exposition declares, with or without samples (a labelled counter nobody has
    incremented yet shows only its HELP and TYPE lines: it is 0, not absent)."""

    samples: Samples
    declared: frozenset[str]


def check_local(url: str) -> str:
    """The URL unchanged if it is http(s) on this machine; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"--metrics must be an http URL on 127.0.0.1 (or localhost), got {url!r}")
    return url


def scrape(url: str, timeout: float = 5.0) -> Scrape:
    """Every sample of the exposition at `url`."""
    with urllib.request.urlopen(check_local(url), timeout=timeout) as response:  # noqa: S310 (checked local)
        text = response.read().decode("utf-8")
    return parse(text)


def parse(text: str) -> Scrape:
    samples: Samples = {}
    declared = set()
    for family in text_string_to_metric_families(text):
        declared.add(family.name)
        if family.type == "counter":
            declared.add(family.name + "_total")
        for s in family.samples:
            declared.add(s.name)
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Scrape(samples, frozenset(declared))


def counter_deltas(before: Scrape, after: Scrape, name: str) -> dict[tuple, float] | None:
    """after - before per label set of counter sample `name` (a label set absent before
    started at 0); None when neither scrape declares it."""
    if name not in before.declared and name not in after.declared:
        return None
    return {labels: value - before.samples.get((sample, labels), 0.0)
            for (sample, labels), value in after.samples.items() if sample == name}


def server_deltas(before: Scrape, after: Scrape, rpc: str = "Search") -> dict:
    """Deltas of the two counters. requests_by_code: {code: n} for `rpc`;
    deadline_overruns: total, and per label set; None (n/a) where not exported."""
    requests = counter_deltas(before, after, REQUESTS)
    by_code: dict[str, float] | None = None
    if requests is not None:
        by_code = {}
        for labels, diff in requests.items():
            labels_d = dict(labels)
            if labels_d.get("rpc", rpc) == rpc and diff:
                code = labels_d.get("code", "")
                by_code[code] = by_code.get(code, 0) + _number(diff)
    overruns = counter_deltas(before, after, OVERRUNS)
    return {
        "rpc": rpc,
        "requests_by_code": None if by_code is None else dict(sorted(by_code.items())),
        "deadline_overruns": None if overruns is None else _number(sum(overruns.values())),
        "deadline_overruns_by_labels": None if overruns is None else {
            ",".join(f"{k}={v}" for k, v in labels) or "-": _number(diff) for labels, diff in overruns.items()},
    }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
