"""The local runner's scheduler (lab.runs.slots): which jobs start, on which GPUs, and that no job is delayed
by a job queued after it. Pure functions: examples first, then random queues simulated to the end."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from fractions import Fraction

import pytest

from lab.runs.slots import Held, Need, Pool, busy, schedule, why_impossible

GPU = Need(gpus=1)
TWO = Need(gpus=2)
CPU = Need(gpus=0)
FOUR = Pool(gpus=("0", "1", "2", "3"), cpu=1)


def held(*assignments):
    return [Held(need, tuple(gpus)) for need, gpus in assignments]


def test_four_lanes_take_four_jobs_each_on_its_own_gpu():
    plan = schedule(FOUR, [], [(i, GPU) for i in range(6)])
    assert plan.start == [(0, ("0",)), (1, ("1",)), (2, ("2",)), (3, ("3",))]
    assert plan.impossible == []


def test_no_gpus_and_one_lane_is_the_sequential_runner():
    pool = Pool(gpus=(), cpu=1)
    assert schedule(pool, [], [(i, CPU) for i in range(3)]).start == [(0, ())]
    assert schedule(pool, held((CPU, ())), [(i, CPU) for i in range(3)]).start == []


def test_max_parallel_runs_that_many_cpu_jobs():
    pool = Pool(gpus=(), cpu=3)
    assert [k for k, _ in schedule(pool, held((CPU, ())), [(i, CPU) for i in range(5)]).start] == [0, 1]


def test_a_two_gpu_job_gets_two_distinct_gpus_and_waits_for_them():
    plan = schedule(FOUR, held((GPU, "0"), (GPU, "1"), (GPU, "2")), [("big", TWO)])
    assert plan.start == []
    plan = schedule(FOUR, held((GPU, "0"), (GPU, "2")), [("big", TWO)])
    assert plan.start == [("big", ("1", "3"))]


def test_a_later_one_gpu_job_does_not_take_the_gpu_the_head_waits_for():
    # GPU 3 is free, the 2-GPU head needs one more: a 1-GPU job behind it would hold GPU 3 for an unknown time.
    plan = schedule(FOUR, held((GPU, "0"), (GPU, "1"), (GPU, "2")), [("big", TWO), ("small", GPU)])
    assert plan.start == []


def test_backfill_onto_what_the_head_cannot_use():
    # The head may use GPUs 0-2 only (its report says gpus: [0, 1, 2]); 0 and 1 are busy, 2 is free.
    waiting = [("big", Need(gpus=2, allowed=("0", "1", "2"))), ("cpu", CPU), ("small", GPU), ("on3", Need(gpus=1, allowed=("3",)))]
    plan = schedule(FOUR, held((GPU, "0"), (GPU, "1")), waiting)
    # The CPU job takes the CPU lane and "small" takes GPU 3, which the head can never use; GPU 2 stays free
    # for the head; "on3" waits for GPU 3.
    assert plan.start == [("cpu", ()), ("small", ("3",))]


def test_a_waiting_cpu_job_reserves_the_cpu_lanes_not_the_gpus():
    plan = schedule(FOUR, held((CPU, ())), [("c1", CPU), ("g", GPU), ("c2", CPU)])
    assert plan.start == [("g", ("0",))]


def test_jobs_per_gpu_packs_and_spreads_first():
    half = Need(gpus=1, share=Fraction(1, 2))
    pool = Pool(gpus=("0", "1"), cpu=1)
    plan = schedule(pool, [], [(i, half) for i in range(5)])
    assert plan.start == [(0, ("0",)), (1, ("1",)), (2, ("0",)), (3, ("1",))]
    # A whole-GPU job waits until one GPU is entirely free, and a half job behind it does not slip in.
    plan = schedule(pool, held((half, "0"), (half, "1")), [("whole", GPU), ("half", half)])
    assert plan.start == []


def test_a_two_gpu_job_never_shares_with_itself():
    half_two = Need(gpus=2, share=Fraction(1, 2))
    plan = schedule(Pool(gpus=("0",), cpu=1), [], [("x", half_two)])
    assert plan.start == [] and plan.impossible and "2 GPUs" in plan.impossible[0][1]


def test_impossible_jobs_are_named_and_block_nothing():
    plan = schedule(Pool(gpus=("0", "1"), cpu=1), [], [("huge", Need(gpus=3)), ("ok", GPU),
                                                       ("elsewhere", Need(gpus=1, allowed=("7",)))])
    assert plan.start == [("ok", ("0",))]
    reasons = dict(plan.impossible)
    assert "needs 3 GPUs and the runner has 2 (0,1)" in reasons["huge"]
    assert "among 7" in reasons["elsewhere"]
    assert why_impossible(Pool(gpus=(), cpu=1), GPU) == "it needs 1 GPU and this runner hands out none"
    assert why_impossible(Pool(gpus=(), cpu=0), CPU)


def test_an_experiment_cap_counts_its_running_jobs_and_reserves_the_group():
    capped = Need(gpus=1, group="e", cap=1)
    plan = schedule(FOUR, held((capped, "0")), [("a", capped), ("b", GPU)])
    # "a" waits for its experiment; it may use any GPU, so "b" must not take the one "a" will want.
    assert plan.start == []
    cpu_capped = Need(gpus=0, group="e", cap=2)
    plan = schedule(Pool(gpus=(), cpu=4), [], [(i, cpu_capped) for i in range(4)])
    assert [k for k, _ in plan.start] == [0, 1]


def test_a_gpu_the_pool_no_longer_has_frees_nothing():
    plan = schedule(Pool(gpus=("0",), cpu=1), held((GPU, "5")), [("a", GPU)])
    assert plan.start == [("a", ("0",))]


def test_the_queue_is_read_only_as_far_as_needed():
    seen = []

    def lazy():
        for i in range(1000):
            seen.append(i)
            yield i, GPU

    # With the CPU lane busy, nothing after the fifth GPU job could start: the rest is not read.
    assert len(schedule(FOUR, held((CPU, ())), lazy()).start) == 4
    assert len(seen) == 5


def test_busy_counts_shares_and_lanes():
    half = Need(gpus=1, share=Fraction(1, 2))
    b = busy(FOUR, held((half, "0"), (TWO, "12"), (CPU, ())))
    assert b == {"gpus": {"0": 0.5, "1": 1.0, "2": 1.0, "3": 0.0}, "cpu_busy": 1, "cpu_lanes": 1, "running": 3}


# -- simulation -----------------------------------------------------------------------------------------------


def simulate(pool: Pool, jobs: list[tuple[Need, int]]):
    """Run the queue to the end with the scheduler: {index: (start time, gpus)}, impossible indexes, and checks."""
    t = 0
    running: dict[int, Held] = {}
    ends: list[tuple[int, int]] = []
    waiting = list(range(len(jobs)))
    started: dict[int, tuple[int, tuple[str, ...]]] = {}
    impossible: set[int] = set()
    while True:
        plan = schedule(pool, running.values(), [(i, jobs[i][0]) for i in waiting])
        for i, _ in plan.impossible:
            impossible.add(i)
        for i, gpus in plan.start:
            need, duration = jobs[i]
            running[i] = Held(need, gpus)
            started[i] = (t, gpus)
            heapq.heappush(ends, (t + duration, i))
        gone = {i for i, _ in plan.start} | {i for i, _ in plan.impossible}
        waiting = [i for i in waiting if i not in gone]
        check_no_double_booking(pool, running.values())
        if waiting:
            check_head_cannot_fit(pool, running.values(), jobs[waiting[0]][0])
        if not ends:
            break
        t = ends[0][0]
        while ends and ends[0][0] == t:
            del running[heapq.heappop(ends)[1]]
    return started, impossible, waiting


def check_no_double_booking(pool: Pool, holding):
    load = Counter()
    cpu = 0
    groups = Counter()
    for h in holding:
        assert len(set(h.gpus)) == len(h.gpus) == h.need.gpus
        assert set(h.gpus) <= set(pool.gpus)
        if h.need.allowed is not None:
            assert set(h.gpus) <= set(h.need.allowed)
        for g in h.gpus:
            load[g] += h.need.share
        cpu += h.need.gpus == 0
        if h.need.group:
            groups[h.need.group] += 1
            assert h.need.cap is None or groups[h.need.group] <= h.need.cap
    assert all(v <= 1 for v in load.values()), load
    assert cpu <= pool.cpu


def check_head_cannot_fit(pool: Pool, holding, head: Need):
    # Work-conserving at the head: if the first waiting job fitted in what is free, it would have started.
    assert schedule(pool, holding, [("head", head)]).start == []


def random_case(rng: random.Random):
    gpus = tuple(str(i) for i in range(rng.randint(0, 5)))
    pool = Pool(gpus=gpus, cpu=rng.randint(1, 3))
    jobs = []
    for _ in range(rng.randint(1, 14)):
        if not gpus or rng.random() < 0.2:
            need = Need(gpus=0, group=rng.choice([None, "a", "b"]))
        else:
            k = rng.choice([1, 1, 1, 2, 2, 3])
            share = Fraction(1, rng.choice([1, 1, 2, 3]))
            allowed = None
            if rng.random() < 0.3:
                allowed = tuple(sorted(rng.sample(gpus + ("9",), rng.randint(1, len(gpus)))))
            need = Need(gpus=k, share=share, allowed=allowed)
        if rng.random() < 0.25:
            need = Need(need.gpus, need.share, need.allowed, group=rng.choice(["a", "b"]), cap=rng.randint(1, 2))
        jobs.append((need, rng.randint(1, 9)))
    return pool, jobs


@pytest.mark.parametrize("seed", range(300))
def test_random_queues_never_double_book_and_never_starve(seed):
    rng = random.Random(seed)
    pool, jobs = random_case(rng)
    started, impossible, waiting = simulate(pool, jobs)
    assert waiting == []  # every job that can ever start did start
    assert set(started) | impossible == set(range(len(jobs)))
    for i in impossible:
        assert why_impossible(pool, jobs[i][0]) is not None


@pytest.mark.parametrize("seed", range(300))
def test_no_job_is_delayed_by_a_job_queued_after_it(seed):
    # A job's start (time and GPUs) depends only on the jobs ahead of it: dropping every later job changes nothing.
    rng = random.Random(10_000 + seed)
    pool, jobs = random_case(rng)
    started, _, _ = simulate(pool, jobs)
    for i in range(len(jobs)):
        alone, _, _ = simulate(pool, jobs[: i + 1])
        assert alone.get(i) == started.get(i), (i, jobs)
