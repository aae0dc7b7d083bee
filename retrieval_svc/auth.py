"""API keys: who the caller is (a Principal) and what it may do on which namespaces.

A keys file (YAML, typically a mounted Kubernetes Secret) lists the keys::

    keys:
      - id: tenant-a                 # named in audit lines and in PERMISSION_DENIED messages
        sha256: 9f86d0...            # sha256 hex of the token; a list during a rotation
        roles: ["admin:tenant-a", "read:shared-*"]
      - id: ingest-job
        client_names: ["ingest-job"] # mTLS: the client certificate's subject CN or a SAN
        roles: ["write:tenant-a"]

A role is granted on namespaces matched by an fnmatch glob (`fnmatch.fnmatchcase`, so
`tenant-a*` matches `tenant-a` and `tenant-a.logs`). `read` covers Search, BatchSearch,
GetChunk, GetDocument; `write` covers Ingest, IngestBatch, DeleteDocuments; `admin` covers
query sets and Evaluate, and implies read and write. Info's configuration is shown to an
admin of every namespace (`admin:*`) only, because it names every tenant's query sets.

Tokens are random (`new_token`, 256 bits), so a plain sha256 is enough to keep a leaked
keys file from yielding usable tokens (no salt or slow hash is needed against brute force
of a 256-bit secret). Nothing here imports gRPC: server.py reads the token and the client
certificate's names off a call and asks `KeyRing.for_token` / `for_client`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Mapping

import yaml
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator,
)

from retrieval_svc.settings import dotted_location

log = logging.getLogger(__name__)

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")
# What each role grants: admin implies read and write.
_IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}), "write": frozenset({"write"}), "admin": frozenset(ROLES),
}
TOKEN_PREFIX = "rsvc_"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """The sha256 hex digest of a token, as the keys file stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A new random API token: 32 bytes from `secrets`, URL-safe base64, with a prefix
    that secret scanners can recognise."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Grant:
    """`role` on every namespace whose name matches the glob `pattern`."""

    role: Role
    pattern: str

    @classmethod
    def parse(cls, text: str) -> "Grant":
        """"read:tenant-*" -> Grant("read", "tenant-*"); ValueError naming the problem."""
        role, sep, pattern = text.partition(":")
        if not sep or not pattern:
            raise ValueError(f"must be ROLE:NAMESPACE_GLOB, e.g. 'read:tenant-a*', got {text!r}")
        if role not in _IMPLIED:
            raise ValueError(f"unknown role {role!r} in {text!r}; roles are {', '.join(ROLES)}")
        return cls(role, pattern)  # type: ignore[arg-type]

    def covers(self, role: str, namespace: str) -> bool:
        return role in _IMPLIED[self.role] and fnmatchcase(namespace, self.pattern)

    def __str__(self) -> str:
        return f"{self.role}:{self.pattern}"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the key's id and its grants."""

    key_id: str
    grants: tuple[Grant, ...]

    def allows(self, role: str, namespace: str) -> bool:
        """Whether this caller holds `role` (or admin) on `namespace` (a normalized name)."""
        return any(g.covers(role, namespace) for g in self.grants)

    def sees(self, namespace: str) -> bool:
        """Whether this caller holds any role on `namespace`, so it may learn that it exists."""
        return any(fnmatchcase(namespace, g.pattern) for g in self.grants)

    @property
    def is_global_admin(self) -> bool:
        """Admin of every namespace (a grant `admin:*`)."""
        return any(g.role == "admin" and g.pattern == "*" for g in self.grants)


# The caller when no keys are configured (the embedded default, loopback only): everything.
OPEN = Principal("anonymous", (Grant("admin", "*"),))


# --- the keys file ---------------------------------------------------------------------


class KeysFileError(ValueError):
    """A keys file that cannot be read or breaks a rule; the message is one line."""


def _one_or_many(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def _sha256_hex(value: str) -> str:
    if not _SHA256_HEX.match(value):
        raise ValueError("must be 64 lower-case hex digits (retrieval-svc keys hash prints them)")
    return value


def _grant(value: str) -> str:
    Grant.parse(value)
    return value


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.@:\-]{1,128}$")
    # Token hashes (sha256 hex); several while a token is being rotated.
    sha256: Annotated[tuple[Annotated[str, AfterValidator(_sha256_hex)], ...],
                      BeforeValidator(_one_or_many)] = Field((), strict=False)
    # mTLS identities: a client certificate's subject CN or any of its SANs.
    client_names: tuple[Annotated[str, Field(min_length=1, max_length=255)], ...] = Field((), strict=False)
    roles: tuple[Annotated[str, AfterValidator(_grant)], ...] = Field(strict=False, min_length=1)

    @model_validator(mode="after")
    def _has_a_credential(self) -> "KeyEntry":
        if not self.sha256 and not self.client_names:
            raise ValueError("needs sha256 (a token's hash) or client_names (mTLS identities)")
        return self


class _KeysDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    keys: tuple[KeyEntry, ...] = Field(strict=False)


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = dotted_location(first["loc"])
    cause = first.get("ctx", {}).get("error")
    message = str(cause) if cause is not None else first["msg"]
    if first["type"] == "extra_forbidden":
        model = _KeysDocument if len(first["loc"]) == 1 else KeyEntry
        message = "unknown field; known: " + ", ".join(model.model_fields)
    elif first["type"] == "missing":
        message = "required"
    elif first["type"] == "too_short":
        message = "must list at least one"
    elif first["type"] == "string_pattern_mismatch":
        message = f"must match {first['ctx']['pattern']}, got {first['input']!r}"
    return f"{where}: {message}" if where else message


@dataclass(frozen=True)
class KeyRing:
    """The keys of one keys file, indexed for lookup on every call."""

    by_hash: Mapping[str, Principal]
    by_client_name: Mapping[str, Principal]
    count: int

    @classmethod
    def from_entries(cls, entries: Iterable[KeyEntry]) -> "KeyRing":
        by_id: dict[str, Principal] = {}
        by_hash: dict[str, Principal] = {}
        by_name: dict[str, Principal] = {}
        for i, entry in enumerate(entries):
            if entry.id in by_id:
                raise KeysFileError(f"keys[{i}].id: {entry.id!r} is used by an earlier key")
            principal = Principal(entry.id, tuple(Grant.parse(r) for r in entry.roles))
            by_id[entry.id] = principal
            for digest in entry.sha256:
                if digest in by_hash:
                    raise KeysFileError(f"keys[{i}].sha256: the same token hash is listed under key "
                                        f"{by_hash[digest].key_id!r}")
                by_hash[digest] = principal
            for name in entry.client_names:
                if name in by_name:
                    raise KeysFileError(f"keys[{i}].client_names: {name!r} is listed under key "
                                        f"{by_name[name].key_id!r}")
                by_name[name] = principal
        return cls(by_hash, by_name, len(by_id))

    @classmethod
    def parse(cls, text: str) -> "KeyRing":
        """A KeyRing from the keys file's YAML text; KeysFileError (one line) if it breaks a rule."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise KeysFileError(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
        if not isinstance(data, Mapping):
            raise KeysFileError("top level must be a mapping with a `keys` list")
        try:
            document = _KeysDocument.model_validate(data)
        except ValidationError as exc:
            raise KeysFileError(_first_error(exc)) from None
        return cls.from_entries(document.keys)

    def for_token(self, token: str) -> Principal | None:
        return self.by_hash.get(hash_token(token))

    def for_client(self, names: Iterable[str]) -> Principal | None:
        """The key whose client_names hold one of a client certificate's names (CN, SANs)."""
        for name in names:
            principal = self.by_client_name.get(name)
            if principal is not None:
                return principal
        return None


def load_keys(path: str | os.PathLike[str]) -> KeyRing:
    """Read and check a keys file; KeysFileError naming the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeysFileError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"{path}: cannot read it: {exc}") from None
    try:
        return KeyRing.parse(text)
    except KeysFileError as exc:
        raise KeysFileError(f"{path}: {exc}") from None


def file_signature(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None when it cannot be read: what changes when a file
    is rewritten or replaced. stat() follows symlinks: a Kubernetes Secret update swaps the
    `..data` link, which changes the inode and mtime seen through the file's path."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class ReloadingKeyRing:
    """A keys file, re-read when it changes (checked at most every `check_seconds`, on the
    calls that ask for the keys). A file that no longer loads keeps the keys loaded before
    and logs why, once per change; the first load raises KeysFileError."""

    def __init__(self, path: str | os.PathLike[str], check_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.check_seconds = check_seconds
        self._clock = clock
        self._signature = self._stat()
        self._ring = load_keys(self.path)
        self._next_check = clock() + check_seconds
        self._checking = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        return file_signature(self.path)

    def current(self) -> KeyRing:
        """The keys in force. One caller at a time checks the file; the others go on with
        the keys they have."""
        now = self._clock()
        if now >= self._next_check and self._checking.acquire(blocking=False):
            try:
                self._next_check = now + self.check_seconds
                self.reload_if_changed()
            finally:
                self._checking.release()
        return self._ring

    def reload_if_changed(self) -> bool:
        """Re-read the file if its inode, size or mtime changed; True when new keys took effect."""
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            ring = load_keys(self.path)
        except KeysFileError as exc:
            log.error("keys file not reloaded, keeping the %d keys loaded before: %s", self._ring.count, exc)
            return False
        self._ring = ring
        log.info("keys file %s reloaded: %d keys", self.path, ring.count)
        return True


def key_entry_yaml(key_id: str, token: str, roles: Iterable[str]) -> str:
    """The keys-file entry for a token (its hash, never the token), as YAML list item text;
    KeysFileError when the id or a role breaks a rule."""
    try:
        entry = KeyEntry(id=key_id, sha256=(hash_token(token),), roles=tuple(roles))
    except ValidationError as exc:
        raise KeysFileError(_first_error(exc)) from None
    body = yaml.safe_dump([{"id": entry.id, "sha256": entry.sha256[0], "roles": list(entry.roles)}],
                          sort_keys=False, default_flow_style=None)
    return body


__all__ = [
    "OPEN", "ROLES", "Grant", "KeyEntry", "KeyRing", "KeysFileError", "Principal", "ReloadingKeyRing",
    "Role", "file_signature", "hash_token", "key_entry_yaml", "load_keys", "new_token",
]
