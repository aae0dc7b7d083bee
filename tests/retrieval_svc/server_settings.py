"""Settings for the servers tests start: free ports, no metrics exporter, small chunker
windows, no scheduled evaluations. A module of its own (not conftest) so tests can import it:
under --import-mode=importlib, `import conftest` finds whichever conftest came first."""

from __future__ import annotations

from retrieval_svc.settings import Settings

SMALL_WINDOWS = {"window_tokens": 48, "overlap_tokens": 8}


def make_settings(store_path, **sections) -> Settings:
    base = {
        "server": {"port": 0, "metrics_port": -1},
        "store": {"path": str(store_path)},
        "chunker": dict(SMALL_WINDOWS),
        "evaluation": {"schedule_seconds": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings().replace(**base)
