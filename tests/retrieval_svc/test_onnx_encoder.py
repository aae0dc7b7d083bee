"""OnnxEncoder (encoder.backend: onnx) over the shipped MiniLM: parity with the torch encoder,
the export cache, the store's encoder binding (fp32 is the torch encoder, int8 another one),
start-up errors that name the setting, and a server that answers searches on it.

The export is made once for the session (about a minute on 2 cores) and shared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval_svc import onnx_encoder as onnx_module
from retrieval_svc.app import App
from retrieval_svc.errors import StartupError
from retrieval_svc.onnx_encoder import PARITY_MIN_COSINE, OnnxEncoder, ensure_export

from corpus import topic_documents  # on sys.path via this folder's conftest
from server_settings import make_settings

# Short and long (over MiniLM's 256 wordpieces, so truncation must cut at the same place),
# non-ASCII, odd spacing, numbers, code, markup, one character and an empty string.
VARIED_TEXTS = [
    "What lifts a kite into the air?",
    "Kites fly when the wind lifts them over the hill.",
    "The mitochondrial genome encodes 13 proteins of the respiratory chain; mutations in "
    "MT-ND4 cause Leber's hereditary optic neuropathy (LHON).",
    "  leading spaces,\ttabs\tand\nnew lines\n\n",
    "Ünïcödé: Straße, naïve café, Москва, 東京都, Ελληνικά, עברית, emoji 🙂🚀",
    "def encode(texts: list[str]) -> np.ndarray:\n    return model(texts)  # code",
    "<p>HTML <b>markup</b> &amp; entities</p>",
    "x",
    "",
    " ".join(f"Sentence {i} of a long passage: proteins fold, cells divide and genes are expressed "
             f"under conditions numbered {i * 7}." for i in range(60)),
    "supercalifragilisticexpialidocious " * 200,
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_fp32(minilm_path, onnx_cache) -> OnnxEncoder:
    return OnnxEncoder(str(minilm_path), cache_dir=onnx_cache)


@pytest.fixture(scope="session")
def onnx_int8(minilm_path, onnx_cache, onnx_fp32) -> OnnxEncoder:
    return OnnxEncoder(str(minilm_path), cache_dir=onnx_cache, precision="int8")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.mark.parity
def test_fp32_gives_the_torch_encoders_vectors(encoder, onnx_fp32):
    lengths = [len(ids) for ids in onnx_fp32._runner.tokenizer(VARIED_TEXTS)["input_ids"]]
    assert max(lengths) > 256  # so truncation is exercised
    torch_vectors = encoder.encode(VARIED_TEXTS, is_query=False)
    onnx_vectors = onnx_fp32.encode(VARIED_TEXTS, is_query=False)
    assert onnx_vectors.shape == (len(VARIED_TEXTS), 384) and onnx_vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(torch_vectors, onnx_vectors).min() >= PARITY_MIN_COSINE


def test_batches_and_single_texts_agree(onnx_fp32):
    together = onnx_fp32.encode(VARIED_TEXTS, is_query=False)
    alone = np.vstack([onnx_fp32.encode([text], is_query=True) for text in VARIED_TEXTS])
    assert _cosines(together, alone).min() >= 0.99999
    assert onnx_fp32.encode([], is_query=True).shape == (0, 384)


def test_fp32_identity_is_the_torch_encoders(encoder, onnx_fp32):
    ident = onnx_fp32.identity
    assert (ident.role, ident.name, ident.revision, ident.dimension) == (
        "encoder", encoder.identity.name, encoder.identity.revision, 384)
    assert ident.device == "cpu (onnxruntime fp32)"
    assert onnx_fp32.export.min_cosine >= PARITY_MIN_COSINE


def test_max_seq_length_truncates(minilm_path, onnx_cache, onnx_fp32):
    short = OnnxEncoder(str(minilm_path), cache_dir=onnx_cache, max_seq_length=8)
    prefix = "one two three four five"  # [CLS] + 5 tokens + room for 2 more
    a, b = short.encode([prefix + " six seven", prefix + " six seven eight nine ten eleven"], is_query=False)
    assert np.allclose(a, b, atol=1e-6)


def test_the_export_is_reused(minilm_path, onnx_cache, onnx_fp32):
    model_file = onnx_fp32.export.model_file
    written = model_file.stat().st_mtime_ns
    again = ensure_export(str(minilm_path), onnx_cache)
    assert again.folder == onnx_fp32.export.folder and model_file.stat().st_mtime_ns == written
    meta = json.loads((again.folder / "export.json").read_text())
    assert meta["revision"] == onnx_fp32.identity.revision and meta["modules"] == ["Transformer", "Pooling",
                                                                                  "Normalize"]


def test_changed_weights_are_exported_anew(minilm_path, tmp_path, monkeypatch):
    """The cache is keyed by the weights' revision: another revision, another export."""
    made = []

    def fake_export(name, folder, revision):
        made.append(revision)
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"not a model")
        (folder / "export.json").write_text(json.dumps({
            "format": onnx_module.EXPORT_FORMAT, "revision": revision, "dimension": 384, "max_seq_length": 256,
            "input_names": ["input_ids", "attention_mask"], "min_cosine": {"fp32": 1.0}}))

    monkeypatch.setattr(onnx_module, "export_model", fake_export)
    for revision in ("1111111111111111", "1111111111111111", "2222222222222222"):
        monkeypatch.setattr(onnx_module, "model_revision", lambda name, org, revision=revision: revision)
        found = ensure_export(str(minilm_path), tmp_path)
        assert found.revision == revision and revision in found.folder.name
    assert made == ["1111111111111111", "2222222222222222"]
    # An unknown revision cannot key the cache: a fresh export each time, marked temporary.
    monkeypatch.setattr(onnx_module, "model_revision", lambda name, org: "unknown")
    first, second = (ensure_export(str(minilm_path), tmp_path) for _ in range(2))
    assert first.temporary and second.temporary and first.folder != second.folder
    assert made[2:] == ["unknown", "unknown"]


@pytest.mark.parity
def test_int8_is_another_encoder(onnx_fp32, onnx_int8):
    assert onnx_int8.identity.revision.startswith(onnx_fp32.identity.revision + "-int8-")
    assert onnx_int8.identity.device == "cpu (onnxruntime int8)"
    cosines = _cosines(onnx_fp32.encode(VARIED_TEXTS, is_query=False), onnx_int8.encode(VARIED_TEXTS, is_query=False))
    # Close (per-channel quantisation), yet not the same vectors: the store must tell them apart.
    assert cosines.min() > 0.9 and cosines.min() < PARITY_MIN_COSINE
    assert 0.9 < onnx_int8.export.min_cosine < PARITY_MIN_COSINE


def test_a_store_opens_with_torch_and_fp32_and_refuses_int8(start_server, encoder, onnx_fp32, onnx_int8, tmp_path):
    store = tmp_path / "bound"
    server, client = start_server(store_path=store)  # built by the torch encoder
    client.ingest(topic_documents())
    server.stop(0)
    server, client = start_server(store_path=store, encoder_override=onnx_fp32)
    hits = client.search("bake bread dough oven", k=3).hits
    assert hits and hits[0].doc_id.startswith("cooking")
    server.stop(0)
    with pytest.raises(StartupError, match="not by the configured encoder"):
        start_server(store_path=store, encoder_override=onnx_int8)


def test_a_server_on_the_onnx_backend_answers_searches(onnx_cache, onnx_fp32, tmp_path):
    from retrieval_svc.client import ProtoClient
    from retrieval_svc.server import Server

    settings = make_settings(tmp_path / "store", encoder={"backend": "onnx", "device": "cpu",
                                                          "onnx_cache_dir": str(onnx_cache)})
    app = App(settings)  # the encoder from the settings, as `serve` builds it
    server = Server(app).start()
    client = ProtoClient(f"127.0.0.1:{server.port}", timeout=60)
    try:
        client.ingest(topic_documents())
        response = client.search("galaxies and planets seen through a telescope", k=3)
        assert response.hits and response.hits[0].doc_id.startswith("astronomy")
        encoder_model = next(m for m in response.models if m.role == "encoder")
        assert encoder_model.device == "cpu (onnxruntime fp32)"
        assert encoder_model.revision == onnx_fp32.identity.revision
    finally:
        client.close()
        server.stop(0)


def test_start_up_names_the_setting_when_onnxruntime_is_missing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    settings = make_settings(tmp_path / "store", encoder={"backend": "onnx"})
    with pytest.raises(StartupError, match=r"encoder.backend: onnx needs onnxruntime; pip install"):
        App(settings)


def test_start_up_names_an_unusable_cache_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings = make_settings(tmp_path / "store", encoder={"backend": "onnx", "onnx_cache_dir": str(blocker / "x")})
    with pytest.raises(StartupError, match="encoder.onnx_cache_dir: cannot keep ONNX exports in"):
        App(settings)
