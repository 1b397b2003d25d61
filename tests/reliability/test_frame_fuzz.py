"""The node frame parser, fuzzed: random and mutated frames (bit flips, truncations, wrong
types, huge numbers, deep nesting, parts out of order), signed and forged.

The rules (docs/security.md): a forged or replayed frame ends the session; a signed frame the
control plane cannot read is skipped; nothing a node sends crashes a handler, reaches another
node's job, or leaves a job unfinished in the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infernet.backends.fake import FakeBackend
from infernet.control.nodes.sessions import _FrameReader
from infernet.protocol import auth, keys
from infernet.protocol.messages import (
    Accept,
    Assembler,
    Done,
    Fail,
    FrameTooBig,
    Heartbeat,
    Hello,
    ModelAd,
    Part,
    Tokens,
    Usage,
    control_decoder,
    encode,
    node_decoder,
    pieces,
)
from tests.control.rawnode import RawNode
from tests.reliability.threaded import network_in_thread, run_on

EXAMPLES = int(os.environ.get("INFERNET_FUZZ_EXAMPLES", "40"))
IDENT = keys.Identity.generate()
SESSION = os.urandom(16)
EPHEMERAL = auth.ephemeral()  # (secret, public) of the control plane's side of the session
H = auth.TAG + 8  # where a frame's JSON starts, after its MAC and sequence number

# -- what to mutate -------------------------------------------------------------------------

HUGE = [2**64 - 1, 2**63, -(2**63), -1, 10**30, 1e308, -0.0]
WEIRD: list[Any] = [None, True, "", "x" * 5000, [], {}, [1, "a", None], {"t": "tokens"}, *HUGE]


def frames(job_id: str) -> list[msgspec.Struct]:
    """One valid frame of every kind a node sends."""
    return [
        Accept(job_id=job_id),
        Tokens(job_id=job_id, text="tok"),
        Done(job_id=job_id, usage=Usage(1, 1), finish_reason="stop"),
        Fail(job_id=job_id, message="boom", code="backend_error", retryable=True, usage=Usage(1, 0)),
        Heartbeat(active=1, tokens_per_s=3.5, models=[ModelAd(name="fake-model", context_length=4096)], capacity=2),
        Hello(pubkey=IDENT.pubkey, backend="raw", models=[ModelAd(name="m")], capacity=1, tier="cpu"),
        Part(id="p1", index=0, last=True, data=encode(Accept(job_id=job_id)).decode()),
    ]


@st.composite
def mutated(draw: st.DrawFn, job_ids: tuple[str, ...] = ("job-x",)) -> bytes:
    """A frame's JSON, changed the way a buggy or hostile node would change it."""
    frame = draw(st.sampled_from(frames(draw(st.sampled_from(job_ids)))))
    raw = encode(frame)
    how = draw(st.sampled_from(["flip", "truncate", "insert", "wrong_type", "drop_field", "extra_field", "deep", "random", "valid"]))
    if how == "flip":
        i = draw(st.integers(0, len(raw) * 8 - 1))
        return raw[: i // 8] + bytes([raw[i // 8] ^ (1 << (i % 8))]) + raw[i // 8 + 1 :]
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "insert":
        i = draw(st.integers(0, len(raw)))
        return raw[:i] + draw(st.binary(min_size=1, max_size=8)) + raw[i:]
    if how == "random":
        return draw(st.binary(max_size=200))
    if how == "valid":
        return raw
    data = msgspec.json.decode(raw)
    field = draw(st.sampled_from(sorted(k for k in data if k != "t") or ["t"]))
    if how == "wrong_type":
        data[field] = draw(st.sampled_from(WEIRD))
    elif how == "drop_field":
        data.pop(field)
    elif how == "extra_field":
        data[draw(st.text(max_size=5))] = draw(st.sampled_from(WEIRD))
    else:  # deep nesting where a dict or a list is taken (written by hand: no encoder nests that deep)
        depth = draw(st.sampled_from([50, 2000, 20000]))
        data[field if isinstance(data.get(field), (dict, list)) else "result"] = "NEST"
        return encode(data).replace(b'"NEST"', b'{"a":' + b"[" * depth + b"]" * depth + b"}")
    return encode(data)


class Socket:
    """What `_FrameReader` reads from: a Starlette WebSocket's `receive`."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    async def receive(self) -> dict[str, Any]:
        return self.messages.pop(0) if self.messages else {"type": "websocket.disconnect", "code": 1000}


async def read_all(messages: list[bytes | str]) -> tuple[list[Any], BaseException | None]:
    """Every frame a session's reader makes of these messages, and what ended it."""
    wire = [{"type": "websocket.receive", "bytes": m} if isinstance(m, bytes) else {"type": "websocket.receive", "text": m} for m in messages]
    reader = _FrameReader(Socket(wire), auth.FrameVerifier(IDENT.pubkey, SESSION, EPHEMERAL[0]), IDENT.pubkey)  # type: ignore[arg-type]
    out: list[Any] = []
    while True:
        try:
            out.append(await reader.next())
        except BaseException as exc:
            return out, exc


def ends_cleanly(exc: BaseException | None) -> bool:
    from starlette.websockets import WebSocketDisconnect

    return isinstance(exc, WebSocketDisconnect)


# -- the parser alone (fast: many examples) ------------------------------------------------------


@given(st.lists(mutated(), max_size=12))
@settings(max_examples=EXAMPLES * 10, deadline=None, suppress_health_check=list(HealthCheck))
def test_signed_frames_of_any_shape_are_read_or_skipped_never_fatal(raws):
    signer = auth.FrameSigner(IDENT, SESSION, EPHEMERAL[1])
    out, end = asyncio.run(read_all([signer.seal(r) for r in raws]))
    # Only a runaway of half-sent parts may end a session of signed frames (it is bounded).
    assert ends_cleanly(end) or isinstance(end, FrameTooBig), repr(end)
    assert all(isinstance(f, (Accept, Tokens, Done, Fail, Heartbeat, Hello)) for f in out)  # never a Part, never junk
    signed = [f for f in map(_readable, raws) if f is not None]
    assert all(f in signed for f in out)  # what is read is exactly something that was signed


def _readable(raw: bytes) -> Any:
    """The frame a message carries, or None: a Part's own frame when it is whole in one."""
    try:
        frame = node_decoder.decode(raw)
        return node_decoder.decode(frame.data) if isinstance(frame, Part) else frame
    except (msgspec.DecodeError, RecursionError):
        return None


@given(st.lists(mutated(), min_size=1, max_size=6), st.data())
@settings(max_examples=EXAMPLES * 5, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_forged_or_replayed_frame_ends_the_session(raws, data):
    signer = auth.FrameSigner(IDENT, SESSION, EPHEMERAL[1])
    sealed = [signer.seal(r) for r in raws]
    at = data.draw(st.integers(0, len(sealed) - 1))
    how = data.draw(st.sampled_from(["flip_signature", "flip_seq", "flip_body", "other_key", "other_session", "replay", "short"]))
    bad = sealed[at]
    if how == "flip_signature":
        bad = bytes([bad[0] ^ 1]) + bad[1:]
    elif how == "flip_seq":
        bad = bad[: H - 1] + bytes([bad[H - 1] ^ 2]) + bad[H:]
    elif how == "flip_body":
        bad = bad + b" " if len(bad) == H else bad[:H] + bytes([bad[H] ^ 4]) + bad[H + 1 :]
    elif how == "other_key":
        bad = auth.FrameSigner(keys.Identity.generate(), SESSION, EPHEMERAL[1]).seal(raws[at])
    elif how == "other_session":
        bad = auth.FrameSigner(IDENT, os.urandom(16), EPHEMERAL[1]).seal(raws[at])
    elif how == "replay":
        bad = sealed[0]  # already taken (at = 0: replayed right after itself)
        at += 1
    else:
        bad = bad[: H - 1]
    wire = [*sealed[:at], bad, *sealed[at:]] if how == "replay" else [*sealed[:at], bad, *sealed[at + 1 :]]
    out, end = asyncio.run(read_all(wire))
    assert isinstance(end, auth.AuthError) or (isinstance(end, FrameTooBig) and len(out) <= at), (how, repr(end))


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-2, 5), st.booleans(), st.text(max_size=20)), max_size=30))
@settings(max_examples=EXAMPLES * 10, deadline=None)
def test_the_assembler_takes_parts_in_any_order_and_only_raises_value_errors(parts):
    asm = Assembler(max_bytes=200, max_open=2)
    for ident, index, last, data in parts:
        try:
            whole = asm.feed(Part(id=ident, index=index, last=last, data=data))
        except ValueError:  # out of order, too big, too many open (FrameTooBig is a ValueError)
            continue
        assert whole is None or isinstance(whole, bytes)


@given(st.text(max_size=3000), st.integers(16, 400))
@settings(max_examples=EXAMPLES * 5, deadline=None)
def test_a_frame_cut_into_parts_comes_back_whole(text, limit):
    frame = Tokens(job_id="job-1", text=text)
    asm = Assembler()
    got = [asm.feed(node_decoder.decode(p)) if len(pieces(frame, limit)) > 1 else p for p in pieces(frame, limit)]
    assert node_decoder.decode(got[-1]) == frame and all(g is None for g in got[:-1])


@given(st.binary(max_size=300))
@settings(max_examples=EXAMPLES * 10, deadline=None)
def test_the_node_side_decoder_raises_only_decode_errors(raw):
    try:
        control_decoder.decode(raw)
    except msgspec.DecodeError:
        pass


# -- against a running control plane ----------------------------------------------------------------


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def live():
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)

    async def setup(net):
        await net.add_node(FakeBackend(slots=4, delay_s=0.002))  # the bystander

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, network_in_thread(Path(tmp), setup) as (net, loop):
        yield net, loop, errors
    logging.getLogger().removeHandler(errors)


async def _rogue_round(net, raws: list[bytes], forge: bool) -> dict[str, Any]:
    """A rogue node takes a job, sends `raws` signed (then, with `forge`, one forged frame),
    while an honest node streams a client's answer. What each side ended with."""
    ident = keys.Identity.generate()
    rogue = await RawNode.connect(net.url, ident)
    await rogue.hello(models=("rogue-model",))
    await net.wait_for(lambda: ident.pubkey in net.cp.sessions.nodes)
    async with net.client() as c:
        bystander = asyncio.create_task(c.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "one two three four"}]}))
        job_id = (await c.post("/api/v1/jobs", json={"model": "rogue-model", "prompt": "p", "max_tokens": 4})).json()["id"]
        job = control_decoder.decode(await asyncio.wait_for(rogue.ws.recv(), 10))
        assert job.job_id == job_id
        await rogue.send(Accept(job_id=job_id))
        for raw in raws:
            await rogue.ws.send(rogue.signer.seal(raw.replace(b"job-x", job_id.encode())))
        if forge:
            await rogue.ws.send(auth.FrameSigner(keys.Identity.generate(), bytes.fromhex(rogue.welcome.session), rogue.welcome.ephemeral).seal(encode(Tokens(job_id=job_id, text="forged"))))
            code = await asyncio.wait_for(rogue.closed_code(), 10)
        else:
            await rogue.send(Done(job_id=job_id, usage=Usage(1, 1)))
            code = None
        answer = await bystander
        await net.wait_for(lambda: job_id not in net.cp.driver.jobs, 20)
        await net.cp.driver.settled()
        await net.cp.store.journal.drain()
        row = await net.cp.store.jobs.get(job_id)
        still = ident.pubkey in net.cp.sessions.nodes
    await rogue.close()
    return {"code": code, "answer": answer, "row": row, "connected": still}


@given(st.lists(mutated(("job-x", "job-other")), max_size=8), st.booleans())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_rogue_node_fuzzing_its_socket_harms_nobody_else(live, raws, forge):
    net, loop, errors = live
    before = len(errors.records)
    got = run_on(loop, _rogue_round(net, raws, forge), timeout=60)
    assert got["answer"].status_code == 200 and got["answer"].json()["choices"][0]["message"]["content"] == "echo: one two three four"
    assert got["row"] is not None and got["row"]["status"] in ("completed", "failed", "cancelled"), got["row"]
    if forge:
        assert got["code"] == 4400
    assert not errors.records[before:], [r.getMessage() for r in errors.records[before:]]
