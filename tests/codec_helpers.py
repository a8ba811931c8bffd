"""The payload key of the tests, shared by their clients, workers, replayers and the `lapse`
processes they start (conftest puts it in the environment).

A fixed key, committed on purpose: it guards nothing but test data, and histories recorded
under it (RECORD_HISTORIES=1) stay sealed and still replay in later runs.
"""

from __future__ import annotations

from infra.codec import data_converter
from infra.settings import parse_payload_keys

TEST_KEY_ENTRY = "tests-2026=AQESl9glafCaRyfgE4buA4Rp1RM7uy8ClLhxxKEykt0="
TEST_KEYS = parse_payload_keys("LAPSE_PAYLOAD_KEYS", TEST_KEY_ENTRY)
# What every test client, worker and replayer uses: the project's converter, test key.
DATA_CONVERTER = data_converter(TEST_KEYS)
