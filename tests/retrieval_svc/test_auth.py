"""retrieval_svc.auth: grants, the keys file and its reloading (no server)."""

from __future__ import annotations

import hashlib
import logging

import pytest
import yaml

from retrieval_svc.auth import (
    OPEN, Grant, KeyRing, KeysFileError, Principal, ReloadingKeyRing, hash_token, key_entry_yaml, new_token,
)

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2, "abc"


def test_token_hash_is_sha256_hex_and_new_tokens_are_random():
    assert hash_token("abc") == ABC_SHA256
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(t.startswith("rsvc_") and len(t) >= 45 for t in tokens)


def test_roles_and_globs():
    p = Principal("k", (Grant("admin", "tenant-a*"), Grant("read", "shared"), Grant("write", "inbox-?")))
    assert p.allows("read", "tenant-a") and p.allows("write", "tenant-a.logs") and p.allows("admin", "tenant-ab")
    assert p.allows("read", "shared") and not p.allows("write", "shared") and not p.allows("admin", "shared")
    assert p.allows("write", "inbox-1") and not p.allows("read", "inbox-1") and not p.allows("write", "inbox-12")
    assert not p.allows("read", "Tenant-a")  # names are case-sensitive
    assert not p.allows("read", "default") and not p.sees("default")
    assert p.sees("inbox-1") and not p.is_global_admin
    assert OPEN.allows("admin", "anything") and OPEN.is_global_admin
    assert not Principal("r", (Grant("read", "*"),)).is_global_admin


def _keys(*entries: dict) -> str:
    return yaml.safe_dump({"keys": list(entries)})


def test_keys_file_lookup_by_token_and_client_name():
    rotating = [hash_token("old"), hash_token("new")]
    ring = KeyRing.parse(_keys(
        {"id": "tenant-a", "sha256": rotating, "roles": ["admin:tenant-a"]},
        {"id": "bot", "client_names": ["bot", "bot.example"], "roles": ["write:tenant-a"]},
    ))
    assert ring.count == 2
    assert ring.for_token("old").key_id == ring.for_token("new").key_id == "tenant-a"
    assert ring.for_token("nope") is None
    assert ring.for_client(["unknown", "bot.example"]).key_id == "bot"
    assert ring.for_client(["unknown"]) is None


@pytest.mark.parametrize("text, message", [
    (_keys({"id": "a", "sha256": "abc", "roles": ["read:x"]}), "keys[0].sha256[0]: must be 64 lower-case hex"),
    (_keys({"id": "a", "sha256": ABC_SHA256, "roles": ["reed:x"]}), "keys[0].roles[0]: unknown role 'reed'"),
    (_keys({"id": "a", "sha256": ABC_SHA256, "roles": ["read"]}), "keys[0].roles[0]: must be ROLE:NAMESPACE_GLOB"),
    (_keys({"id": "a", "sha256": ABC_SHA256, "roles": []}), "keys[0].roles: must list at least one"),
    (_keys({"id": "a", "roles": ["read:x"]}), "keys[0]: needs sha256"),
    (_keys({"id": "a", "sha256": ABC_SHA256, "roles": ["read:x"], "role": "x"}), "keys[0].role: unknown field"),
    (_keys({"id": "a b", "sha256": ABC_SHA256, "roles": ["read:x"]}), "keys[0].id: must match"),
    (_keys({"id": "a", "sha256": ABC_SHA256, "roles": ["read:x"]},
           {"id": "a", "client_names": ["c"], "roles": ["read:x"]}), "keys[1].id: 'a' is used by an earlier key"),
    (_keys({"id": "a", "sha256": ABC_SHA256, "roles": ["read:x"]},
           {"id": "b", "sha256": ABC_SHA256, "roles": ["read:x"]}), "keys[1].sha256: the same token hash"),
    (_keys({"id": "a", "client_names": ["c"], "roles": ["read:x"]},
           {"id": "b", "client_names": ["c"], "roles": ["read:x"]}), "keys[1].client_names: 'c' is listed"),
    ("keys: [\n", "not valid YAML at line 2"),
    ("- a\n", "top level must be a mapping"),
])
def test_bad_keys_files_are_named_in_one_line(text, message):
    with pytest.raises(KeysFileError) as e:
        KeyRing.parse(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_new_key_entry_holds_the_hash_and_loads():
    token = new_token()
    entry = key_entry_yaml("tenant-a", token, ["read:tenant-a*"])
    assert token not in entry and hashlib.sha256(token.encode()).hexdigest() in entry
    ring = KeyRing.parse("keys:\n" + "".join(f"  {line}\n" for line in entry.splitlines()))
    assert ring.for_token(token).allows("read", "tenant-a2")
    with pytest.raises(KeysFileError, match="roles"):
        key_entry_yaml("x", token, ["read"])


def test_keys_file_reloads_on_change_and_keeps_keys_when_the_new_file_is_bad(tmp_path, caplog):
    path = tmp_path / "keys.yaml"
    path.write_text(_keys({"id": "first", "sha256": hash_token("one"), "roles": ["read:a"]}))
    now = [0.0]
    keys = ReloadingKeyRing(path, check_seconds=5.0, clock=lambda: now[0])
    assert keys.current().for_token("one").key_id == "first"

    path.write_text(_keys({"id": "second", "sha256": hash_token("two"), "roles": ["read:a"]}))
    now[0] = 4.0
    assert keys.current().for_token("one") is not None  # not checked yet
    now[0] = 5.0
    assert keys.current().for_token("one") is None and keys.current().for_token("two").key_id == "second"

    caplog.set_level(logging.INFO, logger="retrieval_svc.auth")
    path.write_text("keys:\n  - id: broken\n")
    now[0] = 10.0
    assert keys.current().for_token("two").key_id == "second"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "keeping the 1 keys loaded before" in errors[0] and "roles: required" in errors[0]
    now[0] = 15.0
    keys.current()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # logged once per change

    path.unlink()
    now[0] = 20.0
    assert keys.current().for_token("two") is not None  # a vanished file keeps the keys too
    path.write_text(_keys({"id": "third", "sha256": hash_token("three"), "roles": ["read:a"]}))
    now[0] = 25.0
    assert keys.current().for_token("three").key_id == "third"


def test_first_load_of_a_missing_or_bad_file_raises(tmp_path):
    with pytest.raises(KeysFileError, match="does not exist"):
        ReloadingKeyRing(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: 3\n")
    with pytest.raises(KeysFileError, match=f"{bad}: keys"):
        ReloadingKeyRing(bad)


def test_keys_cli_new_hash_check(tmp_path, capsys, monkeypatch):
    import io

    from retrieval_svc.cli import main

    assert main(["keys", "new", "--id", "tenant-a", "--role", "admin:tenant-a", "--role", "read:shared-*"]) == 0
    out = capsys.readouterr().out.splitlines()
    token, entry = out[0], "\n".join(out[1:])
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n" + "".join(f"  {line}\n" for line in entry.splitlines()))
    assert main(["keys", "check", str(path)]) == 0
    assert "1 keys, 1 token hashes, 0 client names" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["keys", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hash_token(token) and hash_token(token) in entry
    assert main(["keys", "new", "--id", "x", "--role", "owner:x"]) == 2
    assert "unknown role 'owner'" in capsys.readouterr().err
    path.write_text("keys: []\nextra: 1\n")
    assert main(["keys", "check", str(path)]) == 2
    assert f"retrieval-svc keys check: {path}: extra: unknown field" in capsys.readouterr().err
