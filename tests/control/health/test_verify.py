"""Verification logic against a scripted fleet (the end-to-end test is in test_market.py)."""

from __future__ import annotations

import math
import random

from infernet.control.health.verify import Verifier, VerifyPolicy, agree

P = VerifyPolicy()


def test_agreement_tolerates_late_divergence_but_not_made_up_text():
    honest = "The sky is blue because air scatters short blue wavelengths more than red ones"
    assert agree(honest, honest, P)
    assert agree(honest, honest.replace("red ones", "longer ones"), P)
    assert not agree(honest, "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do", P)
    assert not agree("a b", "c d", P)


class Fleet:
    """Nodes answering deterministic requests; liars answer something else."""

    def __init__(self, honest: list[str], liars: list[str] = (), busy: set[str] = frozenset()) -> None:
        self.nodes = honest + list(liars)
        self.liars = set(liars)
        self.busy = busy
        self.runs: list[str] = []

    async def run(self, model, kind, body, *, prefer=None, only=None, exclude=frozenset()):
        pool = [n for n in self.nodes if n not in exclude and n not in self.busy]
        if only is not None:
            pool = [n for n in pool if n == only]
        elif prefer in pool:
            pool = [prefer]
        if not pool:
            return None
        node = pool[0]
        self.runs.append(node)
        text = body["messages"][0]["content"]
        return node, ("made up nonsense " * 4 if node in self.liars else f"answer to {text} " * 2)


def make(fleet: Fleet, **policy) -> tuple[Verifier, dict[str, list[bool]]]:
    verdicts: dict[str, list[bool]] = {}
    v = Verifier(VerifyPolicy(**policy), fleet.run, lambda n, ok: verdicts.setdefault(n, []).append(ok), random.Random(0))
    return v, verdicts


async def test_trusted_node_is_the_reference_and_answers_get_recorded():
    fleet = Fleet(["trusted", "h1"], ["liar"])
    v, verdicts = make(fleet, trusted_nodes=frozenset({"trusted"}), prompts=("q",))
    await v.canary("m", ["trusted", "h1", "liar"])
    await v.canary("m", ["trusted", "h1", "liar"])
    assert verdicts == {"h1": [True], "liar": [False]}
    assert fleet.runs.count("trusted") == 1  # asked once, then its answer is on record
    assert "trusted" not in v.checked  # the reference is never judged
    before = len(fleet.runs)
    await v.check("m", "chat", v.canary_body("m", "q"), "liar", "made up")
    assert len(fleet.runs) == before and verdicts["liar"] == [False, False]


async def test_recorded_answers_need_no_second_job():
    fleet = Fleet(["h1"], ["liar"])
    answers = {("m", p): f"answer to {p} " * 2 for p in P.prompts}
    v, verdicts = make(fleet, answers=answers)
    await v.canary("m", ["liar"])
    assert verdicts == {"liar": [False]} and fleet.runs == ["liar"]


async def test_without_a_reference_a_third_node_breaks_the_tie():
    fleet = Fleet(["h1", "h2"], ["liar"])
    v, verdicts = make(fleet)
    await v.check("m", "chat", v.canary_body("m", "q"), "liar", "made up nonsense " * 4)
    assert verdicts == {"liar": [False], "h1": [True], "h2": [True]}
    fleet2 = Fleet(["h1"], ["liar"])
    v2, verdicts2 = make(fleet2)
    await v2.check("m", "chat", v2.canary_body("m", "q"), "liar", "made up nonsense " * 4)
    assert verdicts2 == {}  # two disagreeing nodes and no third: nobody is blamed


async def test_canaries_go_to_the_least_verified_node():
    fleet = Fleet(["a", "b", "c"])
    v, verdicts = make(fleet, answers={("m", p): f"answer to {p} " * 2 for p in P.prompts})
    for _ in range(3):
        await v.canary("m", ["a", "b", "c"])
    assert sorted(fleet.runs) == ["a", "b", "c"]


def test_canary_rate_is_random_but_capped():
    v, _ = make(Fleet([]), canary_rate=0.1)
    fired = [i for i in range(1000) if v.canary_due()]
    gaps = [b - a for a, b in zip([-1, *fired], fired)]
    assert max(gaps) <= math.ceil(2 / 0.1)
    assert 80 <= len(fired) <= 250
    v0, _ = make(Fleet([]), canary_rate=0.0)
    assert not any(v0.canary_due() for _ in range(100))


async def test_no_canary_when_nothing_could_judge_the_answer():
    fleet = Fleet(["solo"])
    v, verdicts = make(fleet)
    await v.canary("m", ["solo"])
    assert fleet.runs == [] and verdicts == {}
