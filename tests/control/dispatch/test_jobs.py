"""The job state machine: every fault rule of docs/architecture.md as one visible case."""

from __future__ import annotations

import msgspec
import pytest

from infernet.control.dispatch.jobs import (
    Accepted,
    CancelRequested,
    ClaimRefused,
    Delivered,
    Done,
    Effect,
    Failed,
    JobState,
    JobStatus,
    Lost,
    Outcome,
    Placed,
    TimedOut,
    Unplaceable,
    apply,
    effects,
    outcome,
)
from infernet.protocol.messages import Usage

Q, A, R = JobStatus.QUEUED, JobStatus.ASSIGNED, JobStatus.RUNNING


def new(**kw) -> JobState:
    return JobState(id="j", key_id="k", kind="chat", model="m", **kw)


def on(node: str = "n1", *, delivered: bool = False, **kw) -> JobState:
    """A job running on `node` (first attempt)."""
    s = apply(apply(new(**kw), Placed(node)), Accepted(node))
    return apply(s, Delivered()) if delivered else s


def run(s: JobState, *events) -> JobState:
    for e in events:
        s = apply(s, e)
    return s


def test_the_happy_path_and_its_effects():
    s0 = new()
    s1 = apply(s0, Placed("n1", terms={"t": 1}))
    assert (s1.status, s1.node_id, s1.attempts, s1.terms) == (A, "n1", 1, {"t": 1})
    assert effects(s0, s1) == (Effect.DISPATCH,)
    s2 = apply(s1, Accepted("n1"))
    assert s2.status is R and effects(s1, s2) == (Effect.MARK_RUNNING,)
    s3 = apply(s2, Done("n1", Usage(3, 4), "stop", receipt=({"r": 1}, "sig")))
    assert (s3.status, s3.usage, s3.finish_reason, s3.receipt, s3.error) == (JobStatus.COMPLETED, Usage(3, 4), "stop", ({"r": 1}, "sig"), None)
    assert effects(s2, s3) == (Effect.END, Effect.RELEASE)  # the client's last event before the slot
    assert outcome(Done("n1", Usage(3, 4)), s3) is Outcome.SUCCESS


def test_a_state_is_frozen_and_apply_is_pure():
    s = new()
    with pytest.raises(AttributeError):
        s.status = R  # type: ignore[misc]
    assert apply(s, Placed("n1")) == apply(s, Placed("n1"))
    assert s.status is Q


# -- node vanishes or fails before the first token: retry invisibly -------------------------


def test_a_lost_node_before_the_first_token_retries_elsewhere():
    s = on("n1")
    r = apply(s, Lost("n1", "node disconnected"))
    assert (r.status, r.node_id, r.tried, r.usage, r.error) == (Q, None, frozenset({"n1"}), None, None)
    assert effects(s, r) == (Effect.RELEASE, Effect.REQUEUE)
    assert outcome(Lost("n1", "x"), r) is Outcome.NEUTRAL  # counted once, on the drop
    again = run(r, Placed("n2"), Accepted("n2"), Done("n2", Usage(1, 1)))
    assert again.status is JobStatus.COMPLETED and again.attempts == 2


def test_a_retryable_failure_before_the_first_token_retries_and_excludes_the_node():
    s = on("n1")
    r = apply(s, Failed("n1", "backend_error", "engine crashed", retryable=True, usage=Usage(0, 0)))
    assert (r.status, r.tried, r.usage, r.last_error) == (Q, frozenset({"n1"}), None, "engine crashed")
    assert outcome(Failed("n1", "backend_error", "x", retryable=True), r) is Outcome.FAILURE


def test_a_full_node_stays_eligible():
    r = apply(on("n1"), Failed("n1", "over_capacity", "node at capacity", retryable=True))
    assert r.status is Q and r.tried == frozenset()
    assert outcome(Failed("n1", "over_capacity", "x", retryable=True), r) is Outcome.NEUTRAL


def test_attempts_are_bounded():
    s = new(max_attempts=2)
    for node in ("n1", "n2"):
        s = run(s, Placed(node), Lost(node, "gone"))
    assert s.status is JobStatus.FAILED and s.error.code == "node_failed"
    assert s.error.message == "failed after 2 attempts: gone" and s.tried == {"n1", "n2"}


def test_a_timeout_in_the_queue_after_failures_names_the_last_one():
    s = run(new(), Placed("n1"), Lost("n1", "node disconnected"), TimedOut(7))
    assert s.status is JobStatus.FAILED and s.error.code == "node_failed" and "node disconnected" in s.error.message


# -- after the first token: a clean error, never a duplicate -------------------------------


def test_a_lost_node_after_the_first_token_fails_the_job_uncharged():
    s = on("n1", delivered=True)
    r = apply(s, Lost("n1", "node disconnected"))
    assert (r.status, r.error.code, r.usage) == (JobStatus.FAILED, "node_lost", None)
    assert effects(s, r) == (Effect.END, Effect.RELEASE)


def test_a_retryable_failure_after_the_first_token_is_final():
    r = apply(on("n1", delivered=True), Failed("n1", "backend_error", "engine died", retryable=True, usage=Usage(2, 5)))
    assert (r.status, r.error.code, r.usage) == (JobStatus.FAILED, "backend_error", Usage(2, 5))


def test_a_non_retryable_failure_keeps_the_nodes_code():
    r = apply(on("n1"), Failed("n1", "context_length_exceeded", "too long"))
    assert (r.status, r.error.code, r.error.message) == (JobStatus.FAILED, "context_length_exceeded", "too long")
    assert outcome(Failed("n1", "context_length_exceeded", "too long"), r) is Outcome.NEUTRAL  # the client's mistake
    r = apply(on("n1"), Failed("n1", "backend_error", "boom"))
    assert outcome(Failed("n1", "backend_error", "boom"), r) is Outcome.FAILURE


# -- the client cancels ----------------------------------------------------------------------


def test_cancel_while_queued_ends_at_once():
    s = new()
    r = apply(s, CancelRequested())
    assert r.status is JobStatus.CANCELLED and effects(s, r) == (Effect.END,)


def test_cancel_on_a_node_asks_the_node_then_takes_its_usage():
    s = on("n1", delivered=True)
    c = apply(s, CancelRequested())
    assert c.status is R and c.cancelling and effects(s, c) == (Effect.CANCEL_NODE,)
    assert apply(c, CancelRequested()) is c  # asked once
    d = apply(c, Done("n1", Usage(3, 2), "cancelled"))
    assert (d.status, d.usage, d.error.code) == (JobStatus.CANCELLED, Usage(3, 2), "cancelled")
    assert effects(c, d) == (Effect.END, Effect.RELEASE)


@pytest.mark.parametrize("last", [Failed("n1", "backend_error", "aborted", usage=Usage(1, 1)), Lost("n1", "gone"), TimedOut()])
def test_a_cancelled_job_ends_cancelled_however_the_node_ends(last):
    r = run(on("n1"), CancelRequested(), last)
    assert r.status is JobStatus.CANCELLED and r.error.code == "cancelled"


def test_a_node_reporting_cancelled_ends_the_job_cancelled():
    assert apply(on("n1"), Done("n1", Usage(1, 1), "cancelled")).status is JobStatus.CANCELLED


# -- placement --------------------------------------------------------------------------------


def test_no_node_for_the_job():
    r = apply(new(), Unplaceable("model_not_found", "no online node serves m"))
    assert (r.status, r.error.code) == (JobStatus.FAILED, "model_not_found")
    r = apply(new(), Unplaceable("over_capacity", "too many jobs are waiting", retry_after=3))
    assert (r.error.code, r.error.retry_after) == ("over_capacity", 3)


def test_a_timeout_in_the_queue_is_over_capacity_with_retry_after():
    r = apply(new(), TimedOut(4))
    assert (r.status, r.error.code, r.error.retry_after) == (JobStatus.FAILED, "over_capacity", 4)


def test_a_refused_claim_steps_aside():
    r = apply(new(), ClaimRefused())
    assert (r.status, r.error.code, r.attempts) == (JobStatus.FAILED, "claimed_elsewhere", 0)


# -- stale and late frames -------------------------------------------------------------------


@pytest.mark.parametrize("stale", [Accepted("n1"), Done("n1", Usage(1, 1)), Failed("n1", "x", "y"), Lost("n1", "z")])
def test_frames_of_an_earlier_attempt_are_ignored(stale):
    s = run(new(), Placed("n1"), Lost("n1", "gone"), Placed("n2"))
    assert apply(s, stale) is s


@pytest.mark.parametrize("late", [Accepted("n1"), Done("n1", Usage(9, 9)), Lost("n1", "x"), CancelRequested(), TimedOut(), Placed("n2")])
def test_an_ended_job_never_moves(late):
    s = run(on("n1"), Done("n1", Usage(1, 1)))
    assert apply(s, late) is s and effects(s, apply(s, late)) == ()


def test_every_event_type_is_covered():
    """The table in docs/architecture.md lists these events; a new one needs a rule here."""
    from infernet.control.dispatch import jobs

    names = {t.__name__ for t in jobs.Event.__args__}  # type: ignore[attr-defined]
    assert names == {"Placed", "ClaimRefused", "Accepted", "Delivered", "Done", "Failed", "Lost", "CancelRequested", "TimedOut", "Unplaceable"}
    assert all(issubclass(t, msgspec.Struct) and t.__struct_config__.frozen for t in jobs.Event.__args__)  # type: ignore[attr-defined]
