"""The bus across control-plane replicas, through Redis.

Every replica reaches every node and every job, whoever holds the socket or drives the job:

    {p}:inbox:{replica}   a Redis Stream per replica: what must not be lost on its way to the
                          nodes whose sockets it holds (Reserve, Release, Dispatch, Cancel),
                          answered on the asker's channel
    {p}:to:{replica}      pub/sub per replica: a node's frames for the jobs it drives, answers,
                          and its driver's messages (cancel, attach, relay)
    {p}:fleet             pub/sub: fleet deltas and health notes, to every replica
    {p}:nodes             hash: node -> its last NodeInfo (what a starting replica routes over)
    {p}:replica:{replica} a key with a TTL each replica renews: missing means it went away
    {p}:replicas          the set of replicas that ever said hello

Channels are per replica, with the node and job ids inside the messages, rather than per
node and per job: a replica driving ten thousand jobs needs no ten thousand subscriptions,
and a replica holding ten thousand nodes reads one stream, not ten thousand. A message for a
node or a job still reaches exactly the replica that holds it.

What stays in one process: a message whose addressee is on this replica is a direct call, as
on the `LocalBus`; only traffic between replicas crosses Redis. Publishing never waits: it
queues, and one writer task sends the queue in a pipeline.

When a replica stops renewing its key, the others treat its nodes as gone (`NodeGone`): the
drivers of jobs on those nodes see them lost and follow the fault rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

from infernet.control.bus.base import (
    Attach,
    Cancel,
    CancelJob,
    Dispatch,
    FleetDelta,
    JobFrame,
    Judged,
    NodeGone,
    NodeInfo,
    NodeLoad,
    NodeSeen,
    Relay,
    Release,
    Reserve,
    ToDriver,
    ToJob,
    ToNode,
    Verdict,
    Wiring,
)
from infernet.control.store.redis import connect

log = logging.getLogger("infernet.bus")

ALIVE_S = 5.0  # a replica not heard of this long is gone
BEAT_S = 1.0
ANSWER_S = 5.0  # a node's replica that does not answer this fast counts as unreachable
INBOX_MAX = 100_000
CLOSE_S = 2.0  # the longest a closing bus waits for Redis


class Answer(msgspec.Struct, frozen=True):
    ask: str
    ok: bool


_TYPES: dict[str, type[msgspec.Struct]] = {
    t.__name__: t
    for t in (Reserve, Release, Dispatch, Cancel, JobFrame, CancelJob, Attach, Relay, NodeSeen, NodeLoad, NodeGone, Judged, Verdict, Answer)
}
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(tuple[str, str, Any])  # (type, sender replica, body)


def pack(msg: msgspec.Struct, sender: str) -> bytes:
    return _enc.encode((type(msg).__name__, sender, msg))


def unpack(data: bytes) -> tuple[msgspec.Struct, str]:
    name, sender, body = _dec.decode(data)
    return msgspec.convert(body, _TYPES[name]), sender


_FORGET_NODE = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


class RedisBus(Wiring):
    def __init__(self, url: str, replica: str | None = None) -> None:
        super().__init__(replica)
        self._url = url  # `#name` on it namespaces every key (store/redis.py `connect`)
        self._p = url.partition("#")[2] or "infernet"
        self._r: Any = None
        self._owner: dict[str, tuple[str, str]] = {}  # node -> (its replica, its session)
        self._drivers: dict[str, str] = {}  # job on a node of ours -> the replica driving it
        self._asks: dict[str, asyncio.Future[bool]] = {}
        self._outbox: list[tuple[str, bytes]] = []
        self._stored: list[tuple[str, Any]] = []  # fleet changes for the nodes hash
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._forget: Any = None
        self._closing = False
        self._mine: dict[str, NodeInfo] = {}  # the nodes whose sockets this replica holds
        self._beaten = False
        self.sent = 0  # messages that crossed Redis, for the round-trip figures
        self.received = 0

    def _k(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, say hello, read the fleet as the other replicas last told it."""
        self._r, _ = connect(self._url)
        self._forget = self._r.register_script(_FORGET_NODE)
        await self._beat()
        await self._r.sadd(self._k("replicas"), self._replica)
        self._pubsub = self._r.pubsub()
        await self._pubsub.subscribe(self._k("to", self._replica), self._k("fleet"))
        alive = await self._alive()
        for raw in (await self._r.hgetall(self._k("nodes"))).values():
            info = msgspec.msgpack.decode(raw, type=NodeInfo)
            if info.replica in alive:
                self._owner[info.node_id] = (info.replica, info.session)
                self._deliver_fleet(NodeSeen(info))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(t) for t in (self._read_inbox(), self._read_channels(), self._write(), self._watch_replicas())]

    async def aclose(self) -> None:
        # redis-py may swallow a cancel that lands mid-command (it drops the connection and
        # returns), and a loop would then carry on for ever: each loop also stops on
        # `_closing`, and the wait is bounded.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_S)
        self._tasks = []
        if self._r is not None:
            # Bounded: a Redis that stopped answering (or a pool with no free connection)
            # must not keep a replica from shutting down; the others see it gone anyway
            # once its key expires.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._goodbye(), CLOSE_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._r.aclose(), CLOSE_S)
            self._r = None

    async def _goodbye(self) -> None:
        await self._flush()
        await self._r.delete(self._k("replica", self._replica))
        await self._pubsub.aclose()

    # -- the Bus protocol -----------------------------------------------------------------

    async def send(self, msg: ToNode) -> bool:
        owner = self._owner.get(msg.node_id)
        if owner is None:
            return False
        if owner[0] == self._replica:
            return self._nodes is not None and await self._nodes.handle(msg)
        ask = secrets.token_hex(8)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asks[ask] = answer
        try:
            await self._r.xadd(self._k("inbox", owner[0]), {"m": pack(msg, self._replica), "a": ask}, maxlen=INBOX_MAX, approximate=True)
            self.sent += 1
            return await asyncio.wait_for(answer, ANSWER_S)
        except (TimeoutError, aioredis.RedisError, OSError):
            return False
        finally:
            self._asks.pop(ask, None)

    def publish(self, msg: ToJob) -> None:
        handler = self._jobs.get(msg.job_id)
        if handler is not None:
            handler(msg)
            return
        driver = self._drivers.get(msg.job_id)
        if driver is not None:
            self._queue(self._k("to", driver), pack(msg, self._replica))

    def tell(self, replica: str, msg: ToDriver) -> None:
        if replica == self._replica:
            if self._driver is not None:
                self._driver(msg)
            return
        self._queue(self._k("to", replica), pack(msg, self._replica))

    def announce(self, msg: FleetDelta) -> None:
        self._deliver_fleet(msg)
        self._queue(self._k("fleet"), pack(msg, self._replica))
        if isinstance(msg, NodeSeen):
            self._stored.append(("seen", msg.info))
            self._wake.set()
        elif isinstance(msg, NodeGone):
            self._stored.append(("gone", msg))
            self._wake.set()

    # -- delivery ---------------------------------------------------------------------------

    def _deliver_fleet(self, msg: FleetDelta) -> None:
        if isinstance(msg, NodeSeen):
            self._owner[msg.info.node_id] = (msg.info.replica, msg.info.session)
            if msg.info.replica == self._replica:
                self._mine[msg.info.node_id] = msg.info
            else:
                self._mine.pop(msg.info.node_id, None)
        elif isinstance(msg, NodeGone):
            if self._owner.get(msg.node_id, ("", ""))[1] == msg.session:
                del self._owner[msg.node_id]
            mine = self._mine.get(msg.node_id)
            if mine is not None and mine.session == msg.session:
                del self._mine[msg.node_id]
        for handler in self._fleet:
            try:
                handler(msg)
            except Exception:
                log.exception("a fleet watcher failed on %s", type(msg).__name__)

    def _queue(self, channel: str, data: bytes) -> None:
        self._outbox.append((channel, data))
        self._wake.set()

    async def _write(self) -> None:
        """The one writer: whatever was queued meanwhile goes in one pipeline."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except (aioredis.RedisError, OSError):
                log.exception("could not publish to Redis; retrying")
                await asyncio.sleep(0.2)
                self._wake.set()

    async def _flush(self) -> None:
        out, self._outbox = self._outbox, []
        stored, self._stored = self._stored, []
        if not out and not stored:
            return
        pipe = self._r.pipeline(transaction=False)
        for channel, data in out:
            pipe.publish(channel, data)
        for kind, value in stored:
            if kind == "seen":
                pipe.hset(self._k("nodes"), value.node_id, msgspec.msgpack.encode(value))
                pipe.hset(self._k("owners"), value.node_id, value.replica + "/" + value.session)
        await pipe.execute()
        for kind, value in stored:
            if kind == "gone":
                await self._forget(keys=[self._k("nodes"), self._k("owners")], args=[value.node_id, self._replica + "/" + value.session])
        self.sent += len(out)

    async def _read_channels(self) -> None:
        async for message in self._pubsub.listen():
            if self._closing:
                return
            if message.get("type") != "message":
                continue
            try:
                msg, sender = unpack(message["data"])
            except (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError):
                log.warning("skipping a bus message this replica cannot read")
                continue
            self.received += 1
            if sender == self._replica:
                continue  # our own fleet news: already delivered here
            if isinstance(msg, Answer):
                fut = self._asks.get(msg.ask)
                if fut is not None and not fut.done():
                    fut.set_result(msg.ok)
            elif isinstance(msg, JobFrame):
                handler = self._jobs.get(msg.job_id)
                if handler is not None:
                    handler(msg)
            elif isinstance(msg, (CancelJob, Attach, Relay)):
                if self._driver is not None:
                    self._driver(msg)
            else:
                self._deliver_fleet(msg)  # type: ignore[arg-type]

    async def _read_inbox(self) -> None:
        """What other replicas ask of the nodes whose sockets we hold."""
        key, last = self._k("inbox", self._replica), "$"
        while not self._closing:
            try:
                got = await self._r.xread({key: last}, count=256, block=1000)
            except (aioredis.RedisError, OSError):
                log.exception("could not read this replica's inbox; retrying")
                await asyncio.sleep(0.5)
                continue
            for _, entries in got or ():
                for entry_id, fields in entries:
                    last = entry_id
                    try:
                        msg, sender = unpack(fields[b"m"])
                    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError):
                        continue
                    self.received += 1
                    asyncio.get_running_loop().create_task(self._answer(msg, sender, fields[b"a"].decode()))  # type: ignore[arg-type]

    async def _answer(self, msg: ToNode, sender: str, ask: str) -> None:
        ok = False
        try:
            if self._nodes is not None:
                if isinstance(msg, (Reserve, Dispatch)):
                    job_id = msg.job_id if isinstance(msg, Reserve) else msg.job.job_id
                    self._drivers[job_id] = sender  # its frames go to the replica driving it
                ok = await self._nodes.handle(msg)
                if isinstance(msg, Release) or (isinstance(msg, Reserve) and not ok):
                    self._drivers.pop(msg.job_id, None)
        except Exception:
            log.exception("handling %s for %s failed", type(msg).__name__, sender)
        self._queue(self._k("to", sender), pack(Answer(ask, ok), self._replica))

    # -- who is alive -----------------------------------------------------------------------

    async def _beat(self) -> None:
        was = await self._r.set(self._k("replica", self._replica), str(time.time()), px=int(ALIVE_S * 1000), get=True)
        if was is None and self._beaten and self._mine:
            # Our key ran out (the loop stalled past ALIVE_S, or Redis was away): the others
            # took us for gone and dropped our nodes from their views and the nodes hash. We
            # are back, and so are they: say so, or the fleet would route around them for good.
            log.warning("this replica was taken for gone (no beat for %g s); announcing its %d nodes again", ALIVE_S, len(self._mine))
            for info in list(self._mine.values()):
                self.announce(NodeSeen(info))
        self._beaten = True

    async def _alive(self) -> set[str]:
        members = [m.decode() for m in await self._r.smembers(self._k("replicas"))]
        if not members:
            return set()
        values = await self._r.mget([self._k("replica", m) for m in members])
        dead = [m for m, v in zip(members, values) if v is None]
        if dead:
            await self._r.srem(self._k("replicas"), *dead)
        return {m for m, v in zip(members, values) if v is not None}

    async def _watch_replicas(self) -> None:
        """Renew our key; treat the nodes of a replica that stopped renewing its own as gone."""
        while not self._closing:
            await asyncio.sleep(BEAT_S)
            try:
                await self._beat()
                await self._r.expire(self._k("inbox", self._replica), 3600)
                alive = await self._alive()
            except (aioredis.RedisError, OSError):
                log.exception("could not reach Redis to check the replicas")
                continue
            alive.add(self._replica)
            lost = [(n, r, s) for n, (r, s) in self._owner.items() if r not in alive]
            for replica in sorted({r for _, r, _ in lost}):  # a line a replica, not one a node
                log.warning("replica %s went away: its %d nodes are gone", replica, sum(r == replica for _, r, _ in lost))
            for node_id, replica, session in lost:
                self._deliver_fleet(NodeGone(node_id, session, f"its control plane replica {replica} went away", busy=True))
                with contextlib.suppress(aioredis.RedisError, OSError):
                    await self._forget(keys=[self._k("nodes"), self._k("owners")], args=[node_id, replica + "/" + session])

