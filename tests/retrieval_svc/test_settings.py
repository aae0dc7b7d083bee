from __future__ import annotations

import pytest

from retrieval_svc.settings import SettingsError, load_settings


def test_defaults_file_then_environment(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("server:\n  port: 6000\nsearch:\n  fusion: minmax\n  rrf_k: 30\n")
    s = load_settings(path, environ={"RETRIEVAL_SVC_SEARCH__FUSION": "zscore",
                                     "RETRIEVAL_SVC_EVALUATION__KS": "[1, 3]"})
    assert s.server.port == 6000 and s.search.fusion == "zscore" and s.search.rrf_k == 30.0
    assert s.evaluation.ks == (1, 3) and s.limits.default_k == 10


@pytest.mark.parametrize(
    "yaml_text, env, fragment",
    [
        ("server:\n  prot: 1\n", {}, "unknown setting server.prot"),
        ("search:\n  fusion: best\n", {}, "search.fusion: 'best' is not one of"),
        ("limits:\n  max_k: 0\n", {}, "limits.max_k: must be > 0"),
        ("chunker:\n  window_tokens: 10\n  overlap_tokens: 10\n", {}, "overlap_tokens"),
        ("server:\n  port: eighty\n", {}, "server.port: expected an integer"),
        ("", {"RETRIEVAL_SVC_NOPE__X": "1"}, "unknown settings section 'nope'"),
        ("evaluation:\n  query_sets:\n    - path: /x\n", {}, "evaluation.query_sets[0]"),
        ("- a list\n", {}, "top level must be a mapping"),
    ],
)
def test_bad_settings_name_the_bad_value(tmp_path, yaml_text, env, fragment):
    path = tmp_path / "settings.yaml"
    path.write_text(yaml_text)
    with pytest.raises(SettingsError) as e:
        load_settings(path, environ=env)
    assert fragment in str(e.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_example_settings_file_lists_the_defaults():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "settings.yaml"
    assert load_settings(example, environ={}) == load_settings(environ={})
