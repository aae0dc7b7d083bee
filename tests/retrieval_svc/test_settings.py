from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from retrieval_svc.settings import Settings, SettingsError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "settings.yaml"


def settings_file(tmp_path, data) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_defaults_file_then_environment(tmp_path):
    path = settings_file(tmp_path, "server:\n  port: 6000\n  host: 0.0.0.0\nsearch:\n  fusion: minmax\n  rrf_k: 30\n")
    s = load_settings(path, environ={"RETRIEVAL_SVC_SEARCH__FUSION": "zscore",
                                     "RETRIEVAL_SVC_SERVER__PORT": "7000",
                                     "RETRIEVAL_SVC_EVALUATION__KS": "[1, 3]"})
    assert s.search.fusion == "zscore" and s.server.port == 7000  # environment over file
    assert s.server.host == "0.0.0.0" and s.search.rrf_k == 30.0  # file over defaults
    assert s.evaluation.ks == (1, 3) and s.limits.default_k == 10 and s.server.max_workers == 96


def test_config_file_named_by_the_environment(tmp_path):
    path = settings_file(tmp_path, {"store": {"path": "/srv/store"}})
    assert load_settings(environ={"RETRIEVAL_SVC_CONFIG": str(path)}).store.path == "/srv/store"


def test_environment_values_are_yaml_scalars():
    s = load_settings(environ={
        "RETRIEVAL_SVC_SEARCH__RERANK": "true",
        "RETRIEVAL_SVC_SEARCH__RRF_K": "30",
        "RETRIEVAL_SVC_BM25__STEMMER": "",
        "RETRIEVAL_SVC_ENCODER__QUERY_PREFIX": "'query: '",
        "RETRIEVAL_SVC_STORE__PATH": "2024",
        "RETRIEVAL_SVC_DENSE__KIND": "hnsw",
        "RETRIEVAL_SVC_DENSE__PARAMS": "{M: 16, efSearch: 128}",
        "RETRIEVAL_SVC_EVALUATION__QUERY_SETS": "[{name: scifact, path: /data/scifact}]",
    })
    assert s.search.rerank is True and s.search.rrf_k == 30.0 and s.bm25.stemmer == ""
    assert s.encoder.query_prefix == "query: " and s.store.path == "2024"
    assert s.dense.params == {"M": 16, "efSearch": 128}
    assert s.evaluation.query_sets[0].name == "scifact" and isinstance(s.evaluation.query_sets, tuple)


def test_nested_delimiter_reaches_into_a_mapping_from_the_file(tmp_path):
    path = settings_file(tmp_path, {"dense": {"kind": "ivf", "params": {"nlist": 64}}})
    s = load_settings(path, environ={"RETRIEVAL_SVC_DENSE__PARAMS__NPROBE": "4"})
    assert s.dense.params == {"nlist": 64, "nprobe": 4}


def test_prefixed_variables_without_a_section_are_not_settings():
    environ = {"RETRIEVAL_SVC_TARGET": "127.0.0.1:1", "RETRIEVAL_SVC_LOG_LEVEL": "debug"}
    assert load_settings(environ=environ) == Settings()


@pytest.mark.parametrize(
    "data, fragments",
    [
        ({"store": {"snapshot_interval_seconds": 0}}, ["store.snapshot_interval_seconds: must be > 0, got 0"]),
        ({"store": {"snapshot_interval_seconds": -30}}, ["store.snapshot_interval_seconds"]),
        ({"server": {"grace_seconds": -1}}, ["server.grace_seconds: must be >= 0, got -1"]),
        ({"server": {"grace_seconds": float("inf")}}, ["server.grace_seconds"]),
        ({"server": {"port": 65536}}, ["server.port"]),
        ({"server": {"port": -1}}, ["server.port"]),
        ({"server": {"port": "eighty"}}, ["server.port", "'eighty'"]),
        ({"server": {"metrics_port": -2}}, ["server.metrics_port"]),
        ({"server": {"metrics_port": 65536}}, ["server.metrics_port"]),
        ({"server": {"torch_threads": -1}}, ["server.torch_threads"]),
        ({"server": {"max_workers": 61}}, ["server.max_workers", "admission.search_in_flight", "got 61"]),
        ({"admission": {"search_queue": 100}}, ["server.max_workers", "admission.search_in_flight"]),
        ({"admission": {"search_in_flight": 0}}, ["admission.search_in_flight"]),
        ({"admission": {"write_in_flight": 0}}, ["admission.write_in_flight"]),
        ({"admission": {"search_queue": -1}}, ["admission.search_queue"]),
        ({"admission": {"write_queue": -1}}, ["admission.write_queue"]),
        ({"admission": {"queue_timeout_seconds": 0}}, ["admission.queue_timeout_seconds"]),
        ({"admission": {"retry_after_seconds": 0}}, ["admission.retry_after_seconds"]),
        ({"bm25": {"k1": -0.1}}, ["bm25.k1"]),
        ({"bm25": {"b": 1.5}}, ["bm25.b: must be <= 1, got 1.5"]),
        ({"bm25": {"b": -0.1}}, ["bm25.b"]),
        ({"bm25": {"epsilon": -0.01}}, ["bm25.epsilon"]),
        ({"bm25": {"stemmer": "snowball"}}, ["bm25.stemmer", "'porter'", "'snowball'"]),
        ({"bm25": {"tokenizer": "words"}}, ["bm25.tokenizer", "'unicode_words'", "'words'"]),
        ({"bm25": {"stopwords": 1}}, ["bm25.stopwords"]),
        ({"reranker": {"max_wait_ms": -1}}, ["reranker.max_wait_ms"]),
        ({"encoder": {"max_wait_ms": -1}}, ["encoder.max_wait_ms"]),
        ({"encoder": {"device": "gpu"}}, ["encoder.device", "'gpu'"]),
        ({"encoder": {"device": "cuda:x"}}, ["encoder.device"]),
        ({"reranker": {"device": "tpu"}}, ["reranker.device"]),
        ({"encoder": {"batch_size": 0}}, ["encoder.batch_size"]),
        ({"encoder": {"backend": "tensorrt"}}, ["encoder.backend: must be 'torch' or 'onnx', got 'tensorrt'"]),
        ({"encoder": {"backend": "onnx", "onnx_precision": "int4"}}, ["encoder.onnx_precision", "'int4'"]),
        ({"encoder": {"onnx_precision": "int8"}}, ["encoder.onnx_precision: applies to backend: onnx only"]),
        ({"encoder": {"backend": "onnx", "device": "cuda"}}, ["encoder.device: the onnx backend runs on the CPU"]),
        ({"chunker": {"name": "sentences"}}, ["chunker.name", "'window'"]),
        ({"chunker": {"window_tokens": 10, "overlap_tokens": 10}}, ["chunker.overlap_tokens", "window_tokens"]),
        ({"chunker": {"overlap_tokens": -1}}, ["chunker.overlap_tokens"]),
        ({"limits": {"max_k": 0}}, ["limits.max_k: must be > 0, got 0"]),
        ({"limits": {"default_k": 1001}}, ["limits.default_k", "max_k"]),
        ({"search": {"rerank_top_n": 2001}}, ["search.rerank_top_n", "limits.max_candidates"]),
        ({"search": {"dense_candidates": 2001}}, ["search.dense_candidates", "limits.max_candidates"]),
        ({"search": {"bm25_candidates": 2001}}, ["search.bm25_candidates", "limits.max_candidates"]),
        ({"limits": {"max_candidates": 99}}, ["search.dense_candidates", "limits.max_candidates"]),
        ({"reranker": {"max_candidates": 2001}}, ["reranker.max_candidates", "limits.max_candidates"]),
        ({"search": {"dense_weight": -1}}, ["search.dense_weight"]),
        ({"search": {"bm25_weight": -1}}, ["search.bm25_weight"]),
        ({"search": {"default_mode": "sparse"}}, ["search.default_mode", "'sparse'"]),
        ({"search": {"fusion": "best"}}, ["search.fusion: must be 'rrf', 'minmax' or 'zscore', got 'best'"]),
        ({"search": {"rerank_top_n": 1.5}}, ["search.rerank_top_n"]),
        ({"dense": {"backend": "milvus"}}, ["dense.backend"]),
        ({"store": {"backend": "milvus"}}, ["milvus.uri: is required with store.backend: milvus"]),
        ({"store": {"backend": "lancedb"}}, ["store.backend", "'lancedb'"]),
        ({"store": {"backend": "milvus"}, "milvus": {"uri": "http://m:19530", "lexical": False}},
         ["search.default_mode: must be dense when milvus.lexical is false"]),
        ({"milvus": {"collection_prefix": "bad-prefix"}}, ["milvus.collection_prefix"]),
        ({"milvus": {"flush": "sometimes"}}, ["milvus.flush"]),
        ({"milvus": {"timeout_seconds": 0}}, ["milvus.timeout_seconds"]),
        ({"dense": {"kind": "ivfpq"}}, ["dense.kind"]),
        ({"dense": {"kind": "hnsw", "params": {"efsearch": 64}}}, ["dense.params", "efsearch"]),
        ({"dense": {"kind": "ivf", "params": {"nlist": 0}}}, ["dense.params", "nlist"]),
        ({"dense": {"params": {"M": 16}}}, ["dense.params", "'M'"]),
        ({"dense": {"backend": "torch", "params": {"nprobe": 4}}}, ["dense.params", "nprobe"]),
        ({"evaluation": {"query_sets": [{"name": "a", "format": "csv"}]}}, ["evaluation.query_sets[0].format"]),
        ({"evaluation": {"query_sets": [{"name": "a"}, {"name": "b", "level": "para"}]}},
         ["evaluation.query_sets[1].level", "'para'"]),
        ({"evaluation": {"query_sets": [{"path": "/x"}]}}, ["evaluation.query_sets[0].name: required"]),
        ({"evaluation": {"ks": [1, 0]}}, ["evaluation.ks[1]"]),
        ({"evaluation": {"schedule_seconds": -1}}, ["evaluation.schedule_seconds"]),
        *[({"limits": {name: 0}}, [f"limits.{name}: must be > 0, got 0"]) for name in (
            "max_title_chars", "max_source_uri_chars", "max_metadata_keys", "max_metadata_value_chars",
            "max_metadata_chars", "max_filter_clauses", "max_filter_values", "max_request_id_chars",
            "max_query_sets", "max_query_set_queries", "max_judgements_per_query")],
        ({"search": {"fusoin": "rrf"}}, ["unknown setting search.fusoin; known: bm25_candidates"]),
        ({"evaluation": {"query_sets": [{"name": "a", "lvl": "chunk"}]}},
         ["unknown setting evaluation.query_sets[0].lvl; known:", "level"]),
        ({"admision": {}}, ["unknown setting admision; known: admission"]),
        ({"server": 5}, ["server: expected a mapping, got 5"]),
    ],
)
def test_bad_settings_name_the_key_and_value(tmp_path, data, fragments):
    with pytest.raises(SettingsError) as e:
        load_settings(settings_file(tmp_path, data), environ={})
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"RETRIEVAL_SVC_NOPE__X": "1"}, "unknown setting nope.x (environment variable RETRIEVAL_SVC_NOPE__X)"),
        ({"RETRIEVAL_SVC_SEARCH__FUSOIN": "rrf"}, "unknown setting search.fusoin"),
        ({"RETRIEVAL_SVC_DENSE__PARAMS__EFSEARCH": "64"}, "dense.params"),
        ({"RETRIEVAL_SVC_STORE__SNAPSHOT_INTERVAL_SECONDS": "0"}, "store.snapshot_interval_seconds: must be > 0"),
        ({"RETRIEVAL_SVC_SERVER__PORT": "[1"}, "server.port: cannot parse '[1'"),
        ({"RETRIEVAL_SVC_SERVER__PORT": "yes"}, "server.port"),
    ],
)
def test_bad_environment_is_named(environ, fragment):
    with pytest.raises(SettingsError) as e:
        load_settings(environ=environ)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, fragment",
    [("- a list\n", "top level must be a mapping"), ("server: [\n", "settings.yaml: ")],
)
def test_bad_settings_files_are_reported(tmp_path, text, fragment):
    with pytest.raises(SettingsError) as e:
        load_settings(settings_file(tmp_path, text), environ={})
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_replace_returns_a_validated_copy():
    s = Settings()
    t = s.replace(search={"fusion": "zscore"}, store={"path": "x"})
    assert (t.search.fusion, t.store.path, t.search.rrf_k) == ("zscore", "x", 60.0)
    assert (s.search.fusion, s.store.path) == ("minmax", "var/retrieval-svc")
    with pytest.raises(SettingsError, match="search.fusion"):
        s.replace(search={"fusion": "best"})
    with pytest.raises(SettingsError, match="unknown setting nope"):
        s.replace(nope={"x": 1})


def test_to_json_masks_the_milvus_token():
    settings = Settings().replace(milvus={"token": "root:Milvus"})
    assert "root:Milvus" not in settings.to_json()
    assert json.loads(settings.to_json())["milvus"]["token"] == "***"


def test_settings_are_immutable():
    s = Settings()
    with pytest.raises(ValidationError):
        s.search.fusion = "rrf"
    with pytest.raises(ValidationError):
        s.search = s.search


def test_to_json_holds_every_setting_with_sorted_keys():
    s = Settings().replace(evaluation={"query_sets": [{"name": "a", "path": "/a"}]})
    data = json.loads(s.to_json())
    assert s.to_json() == json.dumps(data, sort_keys=True)
    assert data["admission"]["search_in_flight"] == 4 and data["evaluation"]["ks"] == [1, 5, 10]
    assert data["evaluation"]["query_sets"][0]["name"] == "a"


def test_example_settings_file_lists_every_key_with_its_default():
    example = yaml.safe_load(EXAMPLE.read_text())
    defaults = Settings().model_dump()
    assert set(example) == set(defaults)
    for section, values in defaults.items():
        assert set(example[section]) == set(values), section
    assert load_settings(EXAMPLE, environ={}) == Settings()


def test_serve_reports_bad_settings_in_one_line(tmp_path, monkeypatch, capsys):
    from retrieval_svc.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    path = settings_file(tmp_path, {"store": {"snapshot_interval_seconds": 0}})
    assert main(["serve", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "retrieval-svc: bad settings: store.snapshot_interval_seconds: must be > 0, got 0\n")
    assert main(["serve", "--config", str(EXAMPLE), "--port", "70000"]) == 2
    assert "server.port: must be <= 65535, got 70000" in capsys.readouterr().err
