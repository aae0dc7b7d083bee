"""The committed stubs must equal what scripts/gen_protos.py generates from protos/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_current(tmp_path):
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path)
    committed = REPO / "retrieval_svc" / "api"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    existing = sorted(p.relative_to(committed) for p in committed.rglob("*.py*") if "__pycache__" not in p.parts)
    assert fresh == existing, "stub files differ: run python scripts/gen_protos.py"
    for rel in fresh:
        assert (tmp_path / rel).read_text() == (committed / rel).read_text(), (
            f"{rel} is stale: run python scripts/gen_protos.py"
        )


def _levels(files) -> dict[str, int]:
    """Every RPC's idempotency_level, by "Service/Method"."""
    return {f"{service.name}/{method.name}": method.options.idempotency_level
            for file in files for service in file.service for method in service.method}


def test_declared_idempotency_levels_stay_as_released():
    """buf.yaml leaves RPC_SAME_IDEMPOTENCY_LEVEL out of `buf breaking`, because it also refuses
    a level's first declaration (0.2.0 declared them). What it guards is kept here: a level a
    release declared is kept (clients retry by it), and every RPC is still there."""
    from google.protobuf import descriptor_pb2

    from retrieval_svc.api.retrieval.v1 import evaluation_pb2, retrieval_pb2

    current = []
    for module in (retrieval_pb2, evaluation_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        current.append(proto)
    now = _levels(current)
    unknown = descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN
    for image in sorted((REPO / "protos" / "releases").glob("retrieval-v1-*.binpb")):
        # A Buf image (buf.alpha.image.v1.Image) has FileDescriptorSet's field 1: its files, as
        # FileDescriptorProto fields plus Buf's own, which parse as unknown fields.
        released = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
        then = _levels(f for f in released.file if f.package == "retrieval.v1")
        assert then, f"{image.name} has no retrieval.v1 RPC"
        for rpc, level in then.items():
            assert rpc in now, f"{rpc} of {image.name} is gone"
            if level != unknown:
                assert now[rpc] == level, f"{rpc}: idempotency_level {now[rpc]}, released as {level} in {image.name}"


def test_reads_are_marked_and_only_streaming_ingest_is_not():
    from google.protobuf import descriptor_pb2

    from retrieval_svc.api.retrieval.v1 import evaluation_pb2, retrieval_pb2

    options = descriptor_pb2.MethodOptions
    levels = {method.name: method.GetOptions().idempotency_level
              for module in (retrieval_pb2, evaluation_pb2)
              for service in module.DESCRIPTOR.services_by_name.values() for method in service.methods}
    for read in ("Info", "GetChunk", "ListQuerySets"):
        assert levels[read] == options.NO_SIDE_EFFECTS, read
    # Reads that may refresh a TTL, and writes whose repetition leaves the same state.
    for rpc in ("Search", "BatchSearch", "GetDocument", "DeleteDocuments", "IngestBatch"):
        assert levels[rpc] == options.IDEMPOTENT, rpc
    assert [name for name, level in levels.items() if level == options.IDEMPOTENCY_UNKNOWN] == ["Ingest"]
