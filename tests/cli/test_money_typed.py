"""Money as it is typed: the price table in USDC decimals, both ways; full key ids in any
width, and as JSON."""

from __future__ import annotations

import json

import httpx
import pytest

from infernet.cli import pricefile
from tests.cli.upnet import cli


def test_parse_reads_usdc_exactly():
    table = pricefile.parse(json.dumps({"unit": "USDC per million tokens", "tiers": {"cpu": {"input": "0.01", "output": 0.04}}, "min_balance": 1, "fee_bps": 1500}))
    assert table == {"tiers": {"cpu": {"input": 10_000, "output": 40_000}}, "min_balance": 1_000_000, "fee_bps": 1500}
    # No unit: USDC too (what a person writes); the API's own unit: micro-USDC, as it says.
    assert pricefile.parse('{"tiers": {"cpu": {"input": "0.000001", "output": 2}}}')["tiers"]["cpu"] == {"input": 1, "output": 2_000_000}
    assert pricefile.parse('{"unit": "micro-USDC per million tokens", "tiers": {"cpu": {"input": 7, "output": 9}}}')["tiers"]["cpu"] == {"input": 7, "output": 9}


@pytest.mark.parametrize(("text", "why"), [
    ('{"tiers": {"cpu": {"input": "0.0000001", "output": "1"}}}', "more than 6 decimals"),
    ('{"tiers": {"cpu": {"input": "-1", "output": "1"}}}', "negative"),
    ('{"tiers": {"cpu": {"input": "ten", "output": "1"}}}', "tiers.cpu.input"),
    ('{"unit": "cents", "tiers": {}}', "unknown unit"),
    ("[1, 2]", "one JSON object"),
])
def test_parse_says_what_is_wrong(text, why):
    with pytest.raises(ValueError, match=why):
        pricefile.parse(text)


def test_round_trip_through_the_cli(up, tmp_path):
    r = cli(up.home, "pricing", "--json", INFERNET_API_KEY=up.key)
    assert r.returncode == 0, r.stderr
    table = json.loads(r.stdout)
    assert table["unit"] == "USDC per million tokens" and table["tiers"]["cpu"]["output"] == "0.040000"
    table["tiers"]["cpu"]["output"] = "0.05"
    f = tmp_path / "table.json"
    f.write_text(json.dumps(table))
    r = cli(up.home, "pricing", "set", str(f), INFERNET_API_KEY=up.key)
    assert r.returncode == 0, r.stderr
    api = httpx.get(up.url + "/api/v1/pricing", headers={"Authorization": f"Bearer {up.key}"}).json()
    assert api["tiers"]["cpu"]["output"] == 50_000 and api["min_balance"] == 1_000_000
    table["tiers"]["cpu"]["output"] = "0.04"
    f.write_text(json.dumps(table))
    assert cli(up.home, "pricing", "set", str(f), INFERNET_API_KEY=up.key).returncode == 0
    f.write_text('{"tiers": {"cpu": {"input": "0.0000001", "output": "1"}}}')
    r = cli(up.home, "pricing", "set", str(f), INFERNET_API_KEY=up.key)
    assert r.returncode == 1 and "more than 6 decimals" in r.stderr


def test_key_ids_are_whole_in_a_narrow_pipe_and_in_json(up):
    created = cli(up.home, "keys", "api", "create", "--name", "a-rather-long-name-for-a-key", INFERNET_API_KEY=up.key)
    key_id = created.stdout.split()[0]
    r = cli(up.home, "keys", "api", "list", COLUMNS="50", INFERNET_API_KEY=up.key)
    assert r.returncode == 0 and key_id in r.stdout, r.stdout
    assert "a-rather-long-name-for-a-key" in r.stdout
    rows = json.loads(cli(up.home, "keys", "api", "list", "--json", INFERNET_API_KEY=up.key).stdout)["keys"]
    assert key_id in {k["id"] for k in rows}
    r = cli(up.home, "keys", "api", "credit", key_id, "2.5", INFERNET_API_KEY=up.key)
    assert r.returncode == 0 and "2.500000 USDC" in r.stdout
