"""Verification: catching nodes that return made-up output.

Two sources of samples, both deterministic (temperature 0, fixed seed):

- canaries: for a configurable share of client jobs the control plane sends one extra job
  of its own (an ordinary-looking chat request, under the internal key, so no client pays)
  to the node of that model verified least so far;
- shadows: a sampled client job that was already deterministic is run again on a second node.

A sample's answer is judged against, in this order: a recorded answer for the same request;
a trusted node's answer (`trusted_nodes`); else a second node's answer, with a third node to
break a disagreement. Answers confirmed by a trusted node or by two agreeing nodes are
recorded, so later canaries with the same prompt cost one job. Two answers agree when they
share their first `prefix_words` words or their word sequences are at least `similarity`
alike: honest engines at temperature 0 agree on that; fabricated text does not.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infernet.control import schemas

log = logging.getLogger("infernet.control")

PROMPTS = (
    "Summarize in one sentence why the sky looks blue during the day.",
    "Translate to French: The meeting has been moved to Thursday morning.",
    "Write a Python function that returns the factorial of n.",
    "List three practical tips for keeping houseplants alive.",
    "Explain what a hash table is to a new programmer.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Give a short definition of photosynthesis.",
    "Rewrite this more politely: Send me the report now.",
)


@dataclass(frozen=True)
class VerifyPolicy:
    canary_rate: float = 0.02  # canaries per client job; 0 turns canaries off
    shadow_rate: float = 0.0  # share of deterministic client jobs run again elsewhere
    trusted_nodes: frozenset[str] = frozenset()
    answers: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (model, prompt) -> answer
    prompts: tuple[str, ...] = PROMPTS
    max_tokens: int = 32
    seed: int = 7
    prefix_words: int = 8
    similarity: float = 0.6


# (node_id, output) of a finished internal job, or None when it could not run.
Run = Callable[..., Awaitable[tuple[str, str] | None]]
Verdict = Callable[[str, bool], None]


def agree(a: str, b: str, policy: VerifyPolicy) -> bool:
    wa, wb = a.split(), b.split()
    if wa == wb:
        return True
    n = min(policy.prefix_words, len(wa), len(wb))
    if n == policy.prefix_words and wa[:n] == wb[:n]:
        return True
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio() >= policy.similarity


def _key(model: str, kind: str, body: dict[str, Any]) -> str:
    body = {k: v for k, v in body.items() if k not in ("model", "stream", "stream_options", "user")}
    return json.dumps([model, kind, body], sort_keys=True, separators=(",", ":"))


def deterministic(body: dict[str, Any]) -> bool:
    return body.get("temperature") == 0


class Verifier:
    def __init__(self, policy: VerifyPolicy, run: Run, verdict: Verdict, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._run = run
        self._verdict = verdict
        self._rng = rng or random.Random()
        self._since = 0
        self.checked: dict[str, int] = {}  # node -> verifications so far
        self.caught: dict[str, int] = {}  # node -> failed verifications
        self.answers: dict[str, str] = {}
        for (model, prompt), answer in policy.answers.items():
            self.answers[_key(model, "chat", self.canary_body(model, prompt))] = answer

    def canary_body(self, model: str, prompt: str) -> dict[str, Any]:
        # Built by the same code as a client's request body, so the node cannot tell them apart.
        req = schemas.ChatRequest(model=model, messages=[schemas.Message(role="user", content=prompt)], max_tokens=self.policy.max_tokens, temperature=0.0, seed=self.policy.seed)
        return schemas.client_body(req)

    def canary_due(self) -> bool:
        """Called once per client job. Random, so nodes cannot predict canaries, and capped:
        never more than 2/rate client jobs without one."""
        rate = self.policy.canary_rate
        if rate <= 0:
            return False
        self._since += 1
        if self._rng.random() < rate or self._since >= math.ceil(2 / rate):
            self._since = 0
            return True
        return False

    def shadow_due(self, body: dict[str, Any]) -> bool:
        return self.policy.shadow_rate > 0 and deterministic(body) and self._rng.random() < self.policy.shadow_rate

    def target(self, candidates: list[str]) -> str | None:
        """The candidate verified least so far (ties broken at random)."""
        untrusted = [c for c in candidates if c not in self.policy.trusted_nodes]
        if not untrusted:
            return None
        least = min(self.checked.get(c, 0) for c in untrusted)
        return self._rng.choice([c for c in untrusted if self.checked.get(c, 0) == least])

    async def canary(self, model: str, candidates: list[str]) -> None:
        if len(candidates) < 2 and not self.answers:
            return  # one node and nothing on record: its answer could not be judged
        node = self.target(candidates)
        if node is None:
            return
        body = self.canary_body(model, self._rng.choice(self.policy.prompts))
        got = await self._run(model, "chat", body, prefer=node)
        if got is not None:
            await self.check(model, "chat", body, *got)

    async def check(self, model: str, kind: str, body: dict[str, Any], node: str, output: str) -> None:
        """Judge one node's answer to a deterministic request."""
        if node in self.policy.trusted_nodes:
            self.answers.setdefault(_key(model, kind, body), output)
            return
        key = _key(model, kind, body)
        ref = self.answers.get(key)
        if ref is None:
            for trusted in self.policy.trusted_nodes:
                got = await self._run(model, kind, body, only=trusted)
                if got is not None:
                    ref = self.answers[key] = got[1]
                    break
        if ref is not None:
            self._judge(node, agree(output, ref, self.policy))
            return
        second = await self._run(model, kind, body, exclude={node})
        if second is None:
            return  # no second opinion available: inconclusive, nobody is judged
        if agree(output, second[1], self.policy):
            self.answers[key] = output
            self._judge(node, True)
            self._judge(second[0], True)
            return
        third = await self._run(model, kind, body, exclude={node, second[0]})
        if third is None:
            return
        for liar, honest in ((node, second), (second[0], (node, output))):
            if agree(third[1], honest[1], self.policy):
                self.answers[key] = honest[1]
                self._judge(liar, False)
                self._judge(honest[0], True)
                self._judge(third[0], True)
                return

    def _judge(self, node: str, passed: bool) -> None:
        self.checked[node] = self.checked.get(node, 0) + 1
        if not passed:
            self.caught[node] = self.caught.get(node, 0) + 1
            log.warning("node %s failed verification", node[:12])
        self._verdict(node, passed)

