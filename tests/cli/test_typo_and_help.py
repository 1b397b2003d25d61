"""A first word that is not a command: a typo of one is refused with a suggestion (never
sent as a paid prompt); anything else is a prompt, as before."""

from __future__ import annotations

import pytest

from infernet.cli import suggest
from tests.cli.upnet import cli

COMMANDS = {"chat", "status", "logs", "models", "model", "payments", "payout", "top", "stop", "start", "up", "keys", "service", "doctor"}


@pytest.mark.parametrize(("word", "meant"), [("stauts", "status"), ("logz", "logs"), ("paymnets", "payments"), ("modles", "models"), ("chta", "chat"), ("Status", "status")])
def test_typos_are_recognised(word, meant):
    assert meant in suggest(word, COMMANDS)


@pytest.mark.parametrize("prompt", ["hello", "hi", "why", "explain", "summarize this", "what is 2+2?", "stauts of the moon"])
def test_prompts_are_not(prompt):
    assert suggest(prompt, COMMANDS) == []


def test_a_typo_is_refused_and_never_asked(up, engine):
    asked = len(engine.requests)
    r = cli(up.home, "stauts", INFERNET_API_KEY=up.key)
    assert r.returncode == 2
    assert "unknown command 'stauts'" in r.stderr and "did you mean 'status'" in r.stderr
    assert 'infernet chat "stauts"' in r.stderr
    assert len(engine.requests) == asked, "the typo reached the engine as a prompt"


def test_a_word_that_is_no_command_is_still_a_prompt(up, engine):
    r = cli(up.home, "hello", INFERNET_API_KEY=up.key)
    assert r.returncode == 0 and "one two three" in r.stdout, r.stderr


def test_help_word_shows_help(tmp_path):
    r = cli(tmp_path, "help")
    assert r.returncode == 0 and "Commands" in r.stdout


def test_logs_is_a_command(tmp_path):
    r = cli(tmp_path, "logs")
    assert r.returncode == 1 and "no log yet" in r.stderr and "Traceback" not in r.stderr
