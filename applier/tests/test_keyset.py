import base64
import json
import unittest

from keyset import InvalidKeySet, is_utc_timestamp, parse


def key(raw: bytes, state: str) -> dict:
    return {"name": raw[:16].hex(), "state": state, "createdAt": "2026-01-01T00:00:00Z", "material": base64.b64encode(raw).decode()}


def key_set(*keys: dict, generation: int = 2) -> str:
    return json.dumps({"format": "tls-ticket-keyset", "version": 1, "generation": generation, "keyLength": 48, "keys": list(keys)})


CURRENT, NEXT, PREVIOUS = bytes([1]) * 48, bytes([2]) * 48, bytes([3]) * 48


class TimestampTest(unittest.TestCase):
    def test_a_real_utc_instant_with_up_to_nine_fraction_digits(self):
        for text in ("2024-02-29T00:00:00Z", "2000-02-29T23:59:59Z", "2026-04-30T10:00:00.5Z", "2026-12-31T10:00:00.123456789Z"):
            self.assertTrue(is_utc_timestamp(text), text)

    def test_no_day_past_its_month_no_hour_24_no_second_60_and_z_only(self):
        for text in (
            "2023-02-29T00:00:00Z",  # not a leap year
            "2100-02-29T00:00:00Z",  # divisible by 100, not by 400
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T10:60:00Z",
            "2026-01-01T10:00:60Z",
            "2026-01-01T10:00:00+00:00",
            "2026-01-01T10:00:00.1234567891Z",
        ):
            self.assertFalse(is_utc_timestamp(text), text)


class ParseTest(unittest.TestCase):
    def test_reads_names_and_material_in_set_order(self):
        parsed = parse(key_set(key(CURRENT, "current"), key(NEXT, "next"), key(PREVIOUS, "previous")))
        self.assertEqual((parsed.generation, parsed.key_length), (2, 48))
        self.assertEqual(parsed.names, [CURRENT[:16].hex(), NEXT[:16].hex(), PREVIOUS[:16].hex()])
        self.assertEqual(parsed.materials, [CURRENT, NEXT, PREVIOUS])

    def test_checks_every_key_before_looking_for_duplicates_as_the_engine_does(self):
        broken = dict(key(PREVIOUS, "previous"), createdAt="yesterday")
        with self.assertRaises(InvalidKeySet) as refused:
            parse(key_set(key(CURRENT, "current"), key(NEXT, "next"), key(CURRENT, "previous"), broken))
        self.assertIn("key 4 (%s) has createdAt" % PREVIOUS[:16].hex(), str(refused.exception))

    def test_never_quotes_material_in_a_message(self):
        text = key_set(key(CURRENT, "current"), key(NEXT, "next")).replace('"keys"', "keys")
        with self.assertRaises(InvalidKeySet) as refused:
            parse(text)
        self.assertNotIn(base64.b64encode(CURRENT).decode()[:12], str(refused.exception))
