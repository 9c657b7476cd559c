"""The key set as a node reads it: the same checks, in the same order and with the same messages,
as the engine's parseKeySet (src/core/keyset.ts), so that no document means one thing to the
rotation and another to a node. test/unit/keyset-validators.test.ts holds both to every case."""

from __future__ import annotations

import base64
import binascii
import json
import re

FORMAT, VERSION, LENGTHS = "tls-ticket-keyset", 1, (80, 48)
SET_FIELDS = {"format", "version", "generation", "keyLength", "keys"}
KEY_FIELDS = ("name", "state", "createdAt", "material")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
TODO = "use a key set written by `ticket-keys init`/`rotate` or by the rotation function"
ORDER = "keys must be ordered current, next, then previous keys"
MAX_SAFE_INTEGER = 2**53 - 1


class InvalidKeySet(Exception):
    """The key set is refused (exit 3): its message names what is wrong and never quotes material."""


class KeySet:
    """A valid set: its generation, key length, and the keys' names and raw bytes, in set order."""

    def __init__(self, generation: int, key_length: int, names: list[str], materials: list[bytes]):
        self.generation = generation
        self.key_length = key_length
        self.names = names
        self.materials = materials


def days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def is_utc_timestamp(text: str) -> bool:
    """An ISO 8601 UTC time that names a real instant (no February 30, no hour 25)."""
    if not ISO.match(text):
        return False
    year, month, day, hour, minute, second = (int(part) for part in re.split(r"[-T:]", text[:19]))
    return 1 <= month <= 12 and 1 <= day <= days_in_month(year, month) and hour <= 23 and minute <= 59 and second <= 59


def is_generation(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SAFE_INTEGER


def parse(text: str) -> KeySet:
    if text.strip() == "":
        raise InvalidKeySet("key set is empty: give the key set JSON on standard input or as a file")
    try:
        doc = json.loads(text, parse_constant=reject_constant)
    except ValueError:
        # The parser's own message quotes the input, which may hold key material: never pass it on.
        raise InvalidKeySet("key set is not valid JSON: " + TODO) from None
    repeated = repeated_member(text)
    if repeated is not None:
        raise InvalidKeySet("key set gives the member %s twice in one object: parsers disagree on which one counts; %s" % (json.dumps(repeated[:32], ensure_ascii=False), TODO))
    return validate(doc)


def reject_constant(name: str) -> object:
    """NaN and Infinity are no JSON: Python's json reads them, JSON.parse does not."""
    raise ValueError(name)


def repeated_member(text: str) -> str | None:
    """The first member name that an object of `text` (valid JSON) gives a second time, in the
    order of the text, as the engine's parseKeySet finds it (json keeps the last one silently)."""
    open_objects: list[set[str] | None] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "{":
            open_objects.append(set())
        elif char == "[":
            open_objects.append(None)
        elif char in "}]":
            open_objects.pop()
        elif char == '"':
            end = index + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            token = text[index : end + 1]
            index = end
            following = end + 1
            while following < len(text) and text[following] in " \t\n\r":
                following += 1
            members = open_objects[-1] if open_objects else None
            if following < len(text) and text[following] == ":" and members is not None:
                name = json.loads(token)
                if name in members:
                    return name
                members.add(name)
        index += 1
    return None


def validate(doc: object) -> KeySet:
    if not isinstance(doc, dict):
        raise InvalidKeySet("key set is not a JSON object: " + TODO)
    if doc.get("format") != FORMAT:
        raise InvalidKeySet('key set format %s is unknown: expected "%s"' % (json.dumps(doc.get("format")), FORMAT))
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        raise InvalidKeySet(
            "key set version %s is not supported: this tool reads version %d; upgrade the tool or rewrite the set"
            % (json.dumps(doc.get("version")), VERSION)
        )
    unknown = sorted(set(doc) - SET_FIELDS)
    if unknown:
        raise InvalidKeySet("key set has unknown field(s) %s: %s" % (", ".join(unknown), TODO))
    generation, key_length, keys = doc.get("generation"), doc.get("keyLength"), doc.get("keys")
    if not is_generation(generation):
        raise InvalidKeySet("key set generation %s is not a positive integer: %s" % (json.dumps(generation), TODO))
    if key_length not in LENGTHS or isinstance(key_length, bool):
        raise InvalidKeySet("key set keyLength %s is not supported: it must be 80 or 48" % json.dumps(key_length))
    if not isinstance(keys, list):
        raise InvalidKeySet('key set has no "keys" array: ' + TODO)
    if len(keys) == 0:
        raise InvalidKeySet("key set has no current key: a set needs a current and a next key")
    if len(keys) == 1:
        raise InvalidKeySet("key set has no next key: a set needs a current and a next key")
    names: list[str] = []
    materials: list[bytes] = []
    for index, key in enumerate(keys):
        name, raw = validate_key(key, index, key_length)
        names.append(name)
        materials.append(raw)
    for index, name in enumerate(names):
        if name in names[:index]:
            raise InvalidKeySet("key set holds key %s twice: every key must be distinct" % name)
    return KeySet(generation, key_length, names, materials)


def expected_state(index: int) -> str:
    return "current" if index == 0 else "next" if index == 1 else "previous"


def validate_key(key: object, index: int, key_length: int) -> tuple[str, bytes]:
    where = "key %d" % (index + 1)
    if not isinstance(key, dict):
        raise InvalidKeySet("%s is not an object: %s" % (where, TODO))
    extra = sorted(set(key) - set(KEY_FIELDS))
    if extra:
        raise InvalidKeySet("%s has unknown field(s) %s: %s" % (where, ", ".join(extra), TODO))
    for field in KEY_FIELDS:
        if not isinstance(key.get(field), str):
            raise InvalidKeySet('%s has no "%s" string: %s' % (where, field, TODO))
    name, state, material = key["name"], key["state"], key["material"]
    if state != expected_state(index):
        if index == 0:
            raise InvalidKeySet('key set has no current key first (key 1 is "%s"): %s' % (state, ORDER))
        if index == 1:
            raise InvalidKeySet('key set has no next key second (key 2 is "%s"): %s' % (state, ORDER))
        raise InvalidKeySet('%s has state "%s" where "previous" belongs: %s' % (where, state, ORDER))
    if not is_utc_timestamp(key["createdAt"]):
        raise InvalidKeySet("%s (%s) has createdAt that is not an ISO 8601 UTC time: %s" % (where, name, TODO))
    try:
        if len(material) % 4 or not B64.match(material):
            raise ValueError()
        raw = base64.b64decode(material, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidKeySet("%s (%s) material is not valid base64: %s" % (where, name, TODO)) from None
    if base64.b64encode(raw).decode() != material:
        raise InvalidKeySet(
            "%s (%s) material is not canonical base64 (its last character sets bits past the end): %s" % (where, name, TODO)
        )
    if len(raw) != key_length:
        raise InvalidKeySet(
            "%s (%s) is %d bytes but the set's keyLength is %d: every key must have the same length"
            % (where, name, len(raw), key_length)
        )
    if name != raw[:16].hex():
        raise InvalidKeySet(
            "%s name %s does not match its material (a name is the hex of the first 16 bytes): %s" % (where, name, TODO)
        )
    return name, raw
