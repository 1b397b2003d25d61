"""The dashboard's last hour: buckets, the minute windows, per-key series, pruning."""

from __future__ import annotations

from infernet.control.stats import BUCKET_S, SPAN_S, Stats, vendor_of


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def test_an_hour_of_points_oldest_first_one_per_bucket():
    clock = Clock()
    s = Stats(clock)
    points = s.series()
    assert len(points) == SPAN_S // BUCKET_S
    assert [p["t"] for p in points] == sorted(p["t"] for p in points)
    assert points[-1]["t"] == int(clock.t) // BUCKET_S * BUCKET_S
    assert all(p["jobs_per_min"] == 0 and p["ttft_ms"] is None and p["failure_rate"] is None for p in points)


def test_job_figures_are_over_the_minute_ending_at_each_bucket():
    clock = Clock()
    s = Stats(clock)
    s.job_ended("key_a", "completed", usage(10, 30), 0.2)
    s.job_ended("key_a", "failed", usage(5, 0), None)
    clock.t += 30
    s.job_ended("key_b", "completed", usage(10, 90), 0.4)
    s.job_ended("key_b", "cancelled", usage(1, 3), 0.1)
    now = s.series()[-1]
    assert now["jobs_per_min"] == 4.0
    assert now["tokens_per_s"] == (30 + 90 + 3) / 60
    assert now["prompt_tokens_per_s"] == 26 / 60
    assert now["ttft_ms"] == round((0.2 + 0.4 + 0.1) / 3 * 1000, 1)
    assert now["failure_rate"] == 1 / 3  # cancelled is the client's choice, not a failure
    clock.t += 40  # the first two jobs fell out of the minute
    now = s.series()[-1]
    assert now["jobs_per_min"] == 2.0 and now["failure_rate"] == 0.0


def test_a_key_sees_its_own_jobs_and_the_networks_gauges():
    clock = Clock()
    s = Stats(clock)
    s.sample(3, [("cpu", "cpu"), (">=24gb", "nvidia"), (">=24gb", "nvidia")])
    s.job_ended("key_a", "completed", usage(1, 6), 0.5)
    s.job_ended("key_b", "failed", usage(1, 0), None)
    mine = s.series("key_a")[-1]
    assert mine["jobs_per_min"] == 1.0 and mine["failure_rate"] == 0.0
    assert mine["queue"] == 3 and mine["tiers"] == {"cpu": 1, ">=24gb": 2} and mine["vendors"] == {"cpu": 1, "nvidia": 2}
    assert s.series("key_nobody")[-1]["jobs_per_min"] == 0
    assert s.ended == 2 and s.ended_by_key == {"key_a": 1, "key_b": 1}


def test_the_queue_is_the_highest_seen_in_a_bucket_and_unsampled_buckets_say_so():
    clock = Clock(1_700_000_000.0)
    s = Stats(clock)
    for q in (2, 7, 1):
        s.sample(q, [])
    assert s.series()[-1]["queue"] == 7
    clock.t += BUCKET_S
    assert s.series()[-1]["queue"] is None and s.series()[-2]["queue"] == 7


def test_since_returns_only_the_newer_buckets():
    clock = Clock()
    s = Stats(clock)
    t0 = s.series()[-1]["t"]
    clock.t += 2 * BUCKET_S
    assert [p["t"] for p in s.series(since=t0)] == [t0, t0 + BUCKET_S, t0 + 2 * BUCKET_S]


def test_old_buckets_and_idle_keys_are_forgotten():
    clock = Clock()
    s = Stats(clock)
    s.job_ended("key_old", "completed", usage(1, 1), 0.1)
    clock.t += SPAN_S + 120
    s.job_ended("key_new", "completed", usage(1, 1), 0.1)
    assert set(s._keys) == {"key_new"}
    assert sum(p["jobs_per_min"] for p in s.series()) == 1.0  # only the new job, in the newest window
    clock.t += SPAN_S + 120
    assert all(p["jobs_per_min"] == 0 for p in s.series())  # a reused slot of the ring is not old data


def test_vendor_from_the_advertised_hardware():
    assert vendor_of({"gpus": [{"vendor": "nvidia", "name": "RTX 4090"}]}) == "nvidia"
    assert vendor_of({"gpus": []}) == "cpu"
    assert vendor_of({}) == "cpu"
    assert vendor_of({"gpus": "junk"}) == "cpu"
