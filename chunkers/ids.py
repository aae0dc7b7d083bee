"""Chunk ids: a hash of the document key and the chunk's content, never its position.

`chunk_id = blake2b-128(len(doc_key) || doc_key || occurrence || text)` in hex,
with lengths and the occurrence index as 8-byte big-endian integers so that no
two different inputs share a byte string. `occurrence` counts earlier chunks of
the same document with identical text, so repeated passages keep distinct ids.
"""

from __future__ import annotations

import hashlib

ID_BYTES = 16


def chunk_id(doc_key: str, text: str, occurrence: int = 0) -> str:
    key = doc_key.encode("utf-8")
    digest = hashlib.blake2b(digest_size=ID_BYTES)
    digest.update(len(key).to_bytes(8, "big"))
    digest.update(key)
    digest.update(occurrence.to_bytes(8, "big"))
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()
