"""Hostile requests for the fuzz test, built by walking protobuf message descriptors.

Nothing here knows the service's rules. Field names only steer the *plausible*
values (a namespace that exists, a query set that is registered), so that one
hostile field in an otherwise sensible request reaches the code behind the
validation of the other fields. A field added to a request message is fuzzed
without a change here.
"""

from __future__ import annotations

import math
import random
from typing import Iterable, Mapping, Sequence

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

TIMESTAMP = "google.protobuf.Timestamp"

# (seconds, nanos) outside what google.protobuf.Timestamp allows (years 1..9999,
# nanos 0..999,999,999), or at its edges.
HOSTILE_TIMESTAMPS = (
    (10**15, 0), (2**63 - 1, 0), (-(2**63), 0), (-1, 0), (0, 1), (253_402_300_800, 0),
    (-62_135_596_801, 0), (1_700_000_000, -1), (1_700_000_000, 1_000_000_000),
    (1_700_000_000, 2**31 - 1), (1_700_000_000, -(2**31)), (253_402_300_799, 999_999_999),
)
INT32 = (0, 1, -1, 2, 2**31 - 1, -(2**31), 1001, 2001, 65_536)
INT64 = INT32 + (2**63 - 1, -(2**63), 2**53 + 1, 10**15)
UINT32 = (0, 1, 2**32 - 1)
UINT64 = (0, 1, 2**64 - 1)
DOUBLES = (math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, -1.0, 1e-300, 2.0, 1e18)
SMALL_STRINGS = (
    "", " ", " \t\n\r ", "\x00", "a\x00b", "a" * 129, "b" * 513, "ü" * 4097, "😀" * 300,
    "\u202e\u200b\ufeff", "../../../etc/passwd", "a=b", "%s%n%x", "' OR 1=1 --", "\\", "*", "NaN",
    "-1", "\r\n\r\n", "x" * 100_001, "\U0010ffff" * 3, "A-Za-z0-9_.-",
)
# Sizes of the strings that eat the request's "huge" budget (about 10 MB at most,
# so a request stays far under the server's 64 MiB message limit).
HUGE_LENGTHS = (1_000_000, 2_000_001, 10_000_000)
DEEP_REPEATED = 2000
DEEP_MAP = 100_000

WORDS = ("river mountain signal garden copper window lantern harbor velvet engine pepper marble "
         "thunder ribbon castle meadow silver orbit canvas puzzle").split()


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def entry_fields(field: FieldDescriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """The key and value fields of a map field's entry type."""
    return field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]


class HostileMessages:
    """Builds request messages from a descriptor.

    plausible: field name -> sensible values for that name (namespaces that exist,
      doc ids, query-set names); other fields get small generic values.
    forbidden: strings never produced (the namespaces and sets the test protects).
    huge_budget: how many strings of a megabyte or more may still be produced.
    """

    def __init__(self, rng: random.Random, plausible: Mapping[str, Sequence], forbidden: Iterable[str],
                 huge_budget: int = 4) -> None:
        self.rng = rng
        self.pools = plausible
        self.forbidden = set(forbidden)
        self.huge_budget = huge_budget

    # --- whole messages ---------------------------------------------------------

    def plausible(self, descriptor: Descriptor, depth: int = 0) -> Message:
        """Every field sensible (some left unset)."""
        msg = message_class(descriptor)()
        for field in descriptor.fields:
            if self.rng.random() < 0.25 or (depth > 3 and field.message_type is not None):
                continue
            self._set(msg, field, self._plausible_value, depth)
        return msg

    def random(self, descriptor: Descriptor, depth: int = 0) -> Message:
        """Each field unset, sensible or hostile at random."""
        msg = message_class(descriptor)()
        for field in descriptor.fields:
            roll = self.rng.random()
            if roll < 0.3 or (depth > 3 and field.message_type is not None):
                continue
            if roll < 0.65:
                self._set(msg, field, self._plausible_value, depth)
            else:
                self.set_hostile(msg, field, depth)
        return msg

    def perturbed(self, descriptor: Descriptor) -> Message:
        """A plausible message with one field, anywhere in it, set to a hostile value."""
        msg = self.plausible(descriptor)
        paths = list(self.field_paths(descriptor))
        if not paths:
            return msg
        path = self.rng.choice(paths)
        target = msg
        for field in path[:-1]:
            if field.is_repeated:
                container = getattr(target, field.name)
                target = container[0] if len(container) else container.add()
            else:
                target = getattr(target, field.name)
        self.set_hostile(target, path[-1], len(path))
        return msg

    def field_paths(self, descriptor: Descriptor, prefix: tuple = (), seen: frozenset = frozenset()):
        """Every field reachable through singular and repeated message fields (no cycles)."""
        for field in descriptor.fields:
            yield prefix + (field,)
            sub = field.message_type
            if (sub is not None and not is_map(field) and sub.full_name != TIMESTAMP
                    and sub.full_name not in seen and len(prefix) < 3):
                yield from self.field_paths(sub, prefix + (field,), seen | {descriptor.full_name})

    # --- fields -------------------------------------------------------------------

    def _set(self, msg: Message, field: FieldDescriptor, make, depth: int) -> None:
        """Set one field with values from make(field, depth)."""
        if is_map(field):
            container = getattr(msg, field.name)
            key_field, value_field = entry_fields(field)
            for _ in range(self.rng.randint(1, 3)):
                self._put(container, make(key_field, depth + 1), value_field, make, depth)
        elif field.is_repeated:
            container = getattr(msg, field.name)
            for _ in range(self.rng.randint(1, 3)):
                if field.message_type is not None:
                    container.add().CopyFrom(make(field, depth + 1))
                else:
                    container.append(make(field, depth + 1))
        elif field.message_type is not None:
            getattr(msg, field.name).CopyFrom(make(field, depth + 1))
        else:
            setattr(msg, field.name, make(field, depth + 1))

    def _put(self, container, key, value_field: FieldDescriptor, make, depth: int) -> None:
        if value_field.message_type is not None:
            container[key].CopyFrom(make(value_field, depth + 1))
        else:
            container[key] = make(value_field, depth + 1)

    def set_hostile(self, msg: Message, field: FieldDescriptor, depth: int = 0) -> None:
        """Give one field a hostile value: an extreme scalar, a huge or empty container,
        an out-of-range timestamp, an unknown enum number."""
        rng = self.rng
        msg.ClearField(field.name)
        if is_map(field):
            container = getattr(msg, field.name)
            key_field, value_field = entry_fields(field)
            shape = rng.random()
            if shape < 0.25:  # very many keys
                self.fill_many_keys(container, field, depth)
            elif shape < 0.6:  # hostile keys
                for _ in range(rng.randint(1, 4)):
                    self._put(container, self._hostile_scalar(key_field), value_field,
                              self._plausible_value, depth)
            else:  # hostile values
                for _ in range(rng.randint(1, 4)):
                    self._put(container, self._scalar_plausible(key_field), value_field,
                              self._hostile_value, depth)
            return
        if field.is_repeated:
            container = getattr(msg, field.name)
            shape = rng.random()
            if shape < 0.15:
                return  # explicitly empty
            if shape < 0.45:
                self.fill_deep(container, field, depth)
                return
            for _ in range(rng.randint(1, 5)):
                if field.message_type is not None:
                    container.add().CopyFrom(self._hostile_value(field, depth + 1))
                else:
                    container.append(self._hostile_scalar(field))
            return
        if field.message_type is not None:
            getattr(msg, field.name).CopyFrom(self._hostile_value(field, depth + 1))
        else:
            setattr(msg, field.name, self._hostile_scalar(field))

    def fill_deep(self, container, field: FieldDescriptor, depth: int = 0, hostile: bool | None = None) -> None:
        """DEEP_REPEATED elements: sensible ones, and (unless hostile is False) a few hostile."""
        hostile = self.rng.random() < 0.3 if hostile is None else hostile
        if field.message_type is not None:
            samples = [self._plausible_value(field, depth + 1) for _ in range(8)]
            if hostile:  # one, so that a huge hostile element is not repeated 2000 times
                container.add().CopyFrom(self._hostile_value(field, depth + 1))
            for i in range(DEEP_REPEATED - len(container)):
                container.add().CopyFrom(samples[i % len(samples)])
        else:
            for i in range(DEEP_REPEATED):
                container.append(self._hostile_scalar(field) if hostile and i % 97 == 0
                                 else self._scalar_plausible(field))

    def fill_uniform(self, container, field: FieldDescriptor, depth: int = 0) -> None:
        """DEEP_REPEATED copies of one sensible element (an enum: its first non-zero value),
        the shape that passes validation that only looks at each element."""
        if field.message_type is not None:
            element = self._plausible_value(field, depth + 1)
            for _ in range(DEEP_REPEATED):
                container.add().CopyFrom(element)
            return
        if field.type == FieldDescriptor.TYPE_ENUM:
            element = min((v.number for v in field.enum_type.values if v.number > 0), default=0)
        else:
            element = self._scalar_plausible(field)
        container.extend([element] * DEEP_REPEATED)

    def fill_many_keys(self, container, field: FieldDescriptor, depth: int = 0) -> None:
        """DEEP_MAP distinct keys with sensible values."""
        key_field, value_field = entry_fields(field)
        for i in range(DEEP_MAP):
            self._put(container, self._distinct_key(key_field, i), value_field, self._plausible_value, depth)

    def _hostile_value(self, field: FieldDescriptor, depth: int):
        sub = field.message_type
        if sub is None:
            return self._hostile_scalar(field)
        if sub.full_name == TIMESTAMP:
            seconds, nanos = self.rng.choice(HOSTILE_TIMESTAMPS)
            return message_class(sub)(seconds=seconds, nanos=nanos)
        if self.rng.random() < 0.2:
            return message_class(sub)()  # present but empty
        return self.random(sub, depth)

    def _plausible_value(self, field: FieldDescriptor, depth: int):
        sub = field.message_type
        if sub is None:
            return self._scalar_plausible(field)
        if sub.full_name == TIMESTAMP:
            return message_class(sub)(seconds=1_700_000_000 + self.rng.randint(0, 10**7),
                                      nanos=self.rng.randint(0, 999_999_999))
        return self.plausible(sub, depth)

    def _hostile_scalar(self, field: FieldDescriptor):
        rng, t = self.rng, field.type
        T = FieldDescriptor
        if t == T.TYPE_STRING:
            if self.huge_budget > 0 and rng.random() < 0.04:
                self.huge_budget -= 1
                return rng.choice("xé 😀") * rng.choice(HUGE_LENGTHS)
            return self._allowed(rng.choice(SMALL_STRINGS))
        if t == T.TYPE_BYTES:
            return bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 16, 4096))))
        if t in (T.TYPE_INT32, T.TYPE_SINT32, T.TYPE_SFIXED32):
            return rng.choice(INT32)
        if t in (T.TYPE_INT64, T.TYPE_SINT64, T.TYPE_SFIXED64):
            return rng.choice(INT64)
        if t in (T.TYPE_UINT32, T.TYPE_FIXED32):
            return rng.choice(UINT32)
        if t in (T.TYPE_UINT64, T.TYPE_FIXED64):
            return rng.choice(UINT64)
        if t in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
            value = rng.choice(DOUBLES)
            return value if t == T.TYPE_DOUBLE or not math.isfinite(value) or abs(value) < 3e38 else math.inf
        if t == T.TYPE_BOOL:
            return rng.random() < 0.5
        if t == T.TYPE_ENUM:
            known = [v.number for v in field.enum_type.values]
            return rng.choice(known + [max(known) + 1, 99, -1, 2**31 - 1, -(2**31)])
        raise AssertionError(f"field type {t} of {field.full_name} is not handled")

    def _scalar_plausible(self, field: FieldDescriptor):
        rng, t = self.rng, field.type
        T = FieldDescriptor
        pool = self.pools.get(field.name)
        if pool:
            return rng.choice(list(pool))
        if t == T.TYPE_STRING:
            return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        if t == T.TYPE_BYTES:
            return b"abc"
        if t in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
            return rng.choice((0.0, 0.25, 0.5, 1.0))
        if t == T.TYPE_BOOL:
            return rng.random() < 0.5
        if t == T.TYPE_ENUM:
            return rng.choice([v.number for v in field.enum_type.values])
        return rng.randint(0, 5)

    def _distinct_key(self, key_field: FieldDescriptor, i: int):
        return f"k{i}" if key_field.type == FieldDescriptor.TYPE_STRING else i

    def _allowed(self, value: str) -> str:
        return value + "-x" if value in self.forbidden else value


# --- raw bytes ------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def raw_payload(rng: random.Random, descriptor: Descriptor, valid: bytes) -> tuple[bytes, str]:
    """Malformed (or merely odd) wire bytes for a request of this type, and how they were made.

    `valid` is a serialised plausible request to mutate."""
    fields = list(descriptor.fields) or [None]
    field = rng.choice(fields)
    number = field.number if field is not None else 1
    how = rng.choice((
        "random", "random-long", "flip", "truncate", "insert", "duplicate", "invalid-utf8",
        "wrong-wire-type", "varint-overflow", "length-past-end", "nested-groups", "bad-field-number",
        "empty", "negative-length",
    ))
    if how == "random":
        data = rng.randbytes(rng.randint(1, 64))
    elif how == "random-long":
        data = rng.randbytes(rng.randint(65, 8192))
    elif how == "flip":
        data = bytearray(valid or b"\x00")
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    elif how == "truncate":
        data = valid[: rng.randrange(len(valid))] if len(valid) > 1 else b"\x0a"
    elif how == "insert":
        at = rng.randint(0, len(valid))
        data = valid[:at] + rng.randbytes(rng.randint(1, 16)) + valid[at:]
    elif how == "duplicate":
        data = valid * rng.randint(2, 50)
    elif how == "invalid-utf8":
        strings = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
        target = rng.choice(strings).number if strings else number
        junk = rng.choice((b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\x80", b"\xf4\x90\x80\x80"))
        data = valid + tag(target, 2) + varint(len(junk)) + junk
    elif how == "wrong-wire-type":
        wire = rng.choice((0, 1, 2, 5))
        payload = {0: varint(2**63), 1: b"\xff" * 8, 2: varint(3) + b"\x01\x02\x03", 5: b"\xff" * 4}[wire]
        data = valid + tag(number, wire) + payload
    elif how == "varint-overflow":
        data = valid + tag(number, 0) + b"\xff" * 11 + b"\x01"
    elif how == "length-past-end":
        data = valid + tag(number, 2) + varint(rng.choice((2**31 - 1, 2**32 + 5, 1000))) + b"ab"
    elif how == "nested-groups":
        depth = rng.choice((50, 200, 5000))
        data = valid + tag(19_999, 3) * depth + tag(19_999, 4) * depth
    elif how == "bad-field-number":
        data = valid + varint(rng.choice((0, 7, (2**29 - 1) << 3, 2**35))) + b"\x00"
    elif how == "negative-length":
        data = valid + tag(number, 2) + varint(-1) + b"a"
    else:
        data = b""
    return data, how


def describe(value, limit: int = 400) -> str:
    """A short repr of a message or bytes, with long strings and containers summarised."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) <= 48:
            return f"bytes.fromhex({value.hex()!r})"
        return f"bytes(len={len(value)}, head={value[:32].hex()})"
    text = _describe_message(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value) -> str:
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:12]!r}…(len={len(value)})"
    if isinstance(value, Message):
        return _describe_message(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)


def _describe_message(msg: Message) -> str:
    parts = []
    for field, value in msg.ListFields():
        if is_map(field):
            items = list(value.items())
            shown = ", ".join(f"{_short(k)}: {_short(v)}" for k, v in items[:3])
            parts.append(f"{field.name}={{{shown}{', … ×' + str(len(items)) if len(items) > 3 else ''}}}")
        elif field.is_repeated:
            shown = ", ".join(_short(v) for v in list(value)[:2])
            parts.append(f"{field.name}=[{shown}{', … ×' + str(len(value)) if len(value) > 2 else ''}]")
        else:
            parts.append(f"{field.name}={_short(value)}")
    return f"{msg.DESCRIPTOR.name}({', '.join(parts)})"
