"""Two processes creating one identity file at once: the first one written wins, and the
other takes it (replicas sharing a data directory must sign receipts with one platform key)."""

from __future__ import annotations

from infernet.protocol import keys


def test_the_loser_of_a_create_race_takes_the_winners_key(tmp_path, monkeypatch):
    path = tmp_path / "platform_key.json"
    winner = keys.Identity.generate()
    real = keys.Identity.generate

    def generate():  # the other replica writes its key between our check and our write
        if not path.exists():
            keys.save(path, winner)
        return real()

    monkeypatch.setattr(keys.Identity, "generate", staticmethod(generate))
    got = keys.load_or_create(path)
    assert got.pubkey == winner.pubkey
    assert keys.load_or_create(path).pubkey == winner.pubkey  # the file still holds the winner's
    assert [p.name for p in tmp_path.iterdir()] == ["platform_key.json"]  # no temporary left
