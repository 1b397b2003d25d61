"""`infernet keys show | export | import`: the node identity on disk."""

from __future__ import annotations

import json
import stat

import nostr_sdk as nostr
from typer.testing import CliRunner

from infernet.cli import app
from infernet.protocol import keys

runner = CliRunner()


def _run(home, *args, input=None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=input, env={"INFERNET_HOME": str(home), "COLUMNS": "200"})


def test_show_creates_once_with_mode_0600_and_export_round_trips(tmp_path):
    r = _run(tmp_path, "keys", "show")
    assert r.exit_code == 0, r.output
    path = tmp_path / "node_key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    npub = next(line.split()[-1] for line in r.output.splitlines() if line.startswith("npub"))
    assert _run(tmp_path, "keys", "show").output.count(npub) == 1  # the same identity again
    nsec = _run(tmp_path, "keys", "export").stdout.strip().splitlines()[-1]
    assert nostr.Keys.parse(nsec).public_key().to_bech32() == npub
    hexsecret = _run(tmp_path, "keys", "export", "--hex").stdout.strip().splitlines()[-1]
    assert keys.Identity.from_hex(hexsecret).npub == npub


def test_import_takes_nsec_or_hex_and_guards_an_existing_identity(tmp_path):
    theirs = nostr.Keys.generate()
    r = _run(tmp_path, "keys", "import", theirs.secret_key().to_bech32())
    assert r.exit_code == 0 and theirs.public_key().to_bech32() in r.output
    assert stat.S_IMODE((tmp_path / "node_key.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "node_key.json").read_text())["pubkey"] == theirs.public_key().to_hex()

    other = keys.Identity.generate()
    r = _run(tmp_path, "keys", "import", input=other.secret.hex() + "\n")  # from stdin
    assert r.exit_code == 1 and "already holds another identity" in r.output and "--force" in r.output
    r = _run(tmp_path, "keys", "import", "--force", input=other.secret.hex() + "\n")
    assert r.exit_code == 0 and other.npub in r.output
    r = _run(tmp_path, "keys", "import", "--force", other.npub)
    assert r.exit_code == 1 and "npub is public" in r.output and "Traceback" not in r.output


def test_export_without_an_identity_says_what_to_do(tmp_path):
    r = _run(tmp_path, "keys", "export")
    assert r.exit_code == 1 and "infernet keys import" in r.output
