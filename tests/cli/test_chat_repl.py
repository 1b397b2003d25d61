"""`infernet chat` with no prompt on a terminal: a conversation, driven through a pty."""

from __future__ import annotations

import sys

import pexpect
import pytest

from tests.cli.upnet import cli, env


@pytest.fixture
def repl(up, engine):
    child = pexpect.spawn(sys.executable, ["-m", "infernet", "chat"], env=env(up.home, INFERNET_API_KEY=up.key), encoding="utf-8", timeout=30, dimensions=(40, 160))
    child.expect("llama3.2:latest")
    child.expect_exact(">>> ")
    yield child
    child.close(force=True)


def _chats(engine) -> list[dict]:
    return [body for path, body in engine.requests if path == "/api/chat"]


def _ask(child, text: str) -> None:
    child.sendline(text)
    child.expect("one two three four five")
    child.expect_exact(">>> ")


def test_a_conversation_keeps_its_history(repl, engine):
    start = len(_chats(engine))
    _ask(repl, "first question")
    _ask(repl, "second question")
    sent = _chats(engine)[start:]
    assert [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "user"]
    assert sent[1]["messages"][0]["content"] == "first question" and sent[1]["messages"][1]["content"] == "one two three four five"

    repl.sendline("/system Answer in French.")
    repl.expect("system prompt set")
    repl.expect_exact(">>> ")
    _ask(repl, "third")
    msgs = _chats(engine)[-1]["messages"]
    assert msgs[0] == {"role": "system", "content": "Answer in French."} and len(msgs) == 6

    repl.sendline("/clear")
    repl.expect("conversation cleared")
    repl.expect_exact(">>> ")
    _ask(repl, "fresh start")
    assert [m["role"] for m in _chats(engine)[-1]["messages"]] == ["system", "user"]

    repl.sendline("/model")
    repl.expect(r"\* llama3.2:latest")
    repl.expect_exact(">>> ")
    repl.sendline("/model nope")
    repl.expect("serves no chat model 'nope'")
    repl.expect_exact(">>> ")
    repl.sendline("/wat")
    repl.expect("unknown command /wat")
    repl.expect_exact(">>> ")
    repl.sendline("/quit")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_ctrl_c_stops_an_answer_and_drops_it(repl, engine):
    engine.delay_s = 0.3
    try:
        repl.sendline("a slow one")
        repl.expect("one")
        repl.sendintr()
        repl.expect("stopped")
        repl.expect_exact(">>> ")
    finally:
        engine.delay_s = 0.0
    _ask(repl, "after the stop")
    assert [m["content"] for m in _chats(engine)[-1]["messages"]] == ["after the stop"]
    repl.sendeof()
    repl.expect(pexpect.EOF)


def test_piped_empty_input_still_says_nothing_to_ask(up):
    r = cli(up.home, "chat", input="", INFERNET_API_KEY=up.key)
    assert r.returncode == 1 and "nothing to ask" in r.stderr
