"""Which queued jobs start now, and on which GPUs: the local runner's scheduler, a pure function.

The runner has a pool of lanes (`Pool`): GPUs, each of which holds jobs up to its whole capacity (a job of an
experiment with `jobs_per_gpu: 2` takes half of each GPU it uses), and `cpu` lanes for jobs that use no GPU. Each
queued job says what it needs (`Need`): `gpus` distinct GPUs (0: one CPU lane), the share of each, the GPUs it
may use, and optionally a cap on how many jobs of its experiment run at once.

The rule (`schedule`): jobs are taken in queue order. A job starts when what it needs is free. A job that cannot
start *reserves* everything it could ever use: every GPU it may use (however busy), or the CPU lanes, and its
experiment's cap. A later job starts only on what no earlier waiting job has reserved. Nothing here knows when a
running job will end, so any GPU a waiting job may use could be the one that frees first; giving it to a later job
could delay the waiting one. Backfilling only onto what the waiting jobs cannot use at all (a CPU lane while a GPU
job waits, GPUs while a CPU job waits, GPUs outside a waiting job's `gpus` list) never delays them: a job's start
depends only on the jobs ahead of it and on what was already running (tests check exactly this by simulation).
The price: a 2-GPU job at the head of the queue keeps a free GPU idle until a second one frees, rather than risk
waiting behind a later job.

Placement: a job takes the least-loaded of its free GPUs (ties: pool order), so with `jobs_per_gpu` above 1 jobs
spread over the GPUs before they share one; a job never takes the same GPU twice. A job that can never start
(more GPUs than it may use, a list naming no GPU of the pool, no CPU lane) is returned as `impossible` with the
reason, and reserves nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Hashable, Iterable

WHOLE = Fraction(1)


@dataclass(frozen=True)
class Need:
    """What one job needs: `gpus` distinct GPUs, `share` of each (1/jobs_per_gpu), or one CPU lane (`gpus=0`)."""

    gpus: int = 0
    share: Fraction = WHOLE
    allowed: tuple[str, ...] | None = None  # the GPUs it may use (None: any of the pool)
    group: str | None = None  # its experiment, for `cap`
    cap: int | None = None  # at most this many jobs of `group` at once

    def __post_init__(self):
        if self.gpus < 0:
            raise ValueError("gpus must be >= 0")
        if not (0 < self.share <= 1):
            raise ValueError("share must be in (0, 1]")
        if self.cap is not None and self.cap < 1:
            raise ValueError("cap must be >= 1")


@dataclass(frozen=True)
class Pool:
    """The runner's lanes: the GPU ids it hands out (in order) and its CPU lanes (`max_parallel`)."""

    gpus: tuple[str, ...] = ()
    cpu: int = 1


@dataclass(frozen=True)
class Held:
    """What a running job holds: its need and the GPUs it was given."""

    need: Need
    gpus: tuple[str, ...] = ()


@dataclass
class Plan:
    """`start`: (key, GPU ids) to start now, in queue order; `impossible`: (key, reason) for jobs that never fit;
    `needs`: what each job looked at needs (filled by callers that compute needs on the way)."""

    start: list[tuple[Hashable, tuple[str, ...]]] = field(default_factory=list)
    impossible: list[tuple[Hashable, str]] = field(default_factory=list)
    needs: dict = field(default_factory=dict)


def usable(pool: Pool, need: Need) -> tuple[str, ...]:
    """The pool's GPUs that a job may use, in pool order."""
    if need.allowed is None:
        return pool.gpus
    allowed = set(need.allowed)
    return tuple(g for g in pool.gpus if g in allowed)


def why_impossible(pool: Pool, need: Need) -> str | None:
    """Why a job can never start on this pool, or None when it can once enough is free."""
    if need.gpus == 0:
        return None if pool.cpu >= 1 else "it needs a CPU lane and max_parallel allows none"
    if not pool.gpus:
        return f"it needs {_gpus(need.gpus)} and this runner hands out none"
    have = usable(pool, need)
    if len(have) < need.gpus:
        if need.allowed is not None:
            return f"it needs {_gpus(need.gpus)} among {','.join(need.allowed) or 'none'}; the runner has {len(have)} of them ({','.join(pool.gpus)})"
        return f"it needs {_gpus(need.gpus)} and the runner has {len(pool.gpus)} ({','.join(pool.gpus)})"
    return None


def _gpus(n: int) -> str:
    return "1 GPU" if n == 1 else f"{n} GPUs"


def free_state(pool: Pool, held: Iterable[Held]) -> tuple[dict[str, Fraction], int, Counter]:
    """Free share per GPU, free CPU lanes and running jobs per group, given what running jobs hold."""
    free = {g: WHOLE for g in pool.gpus}
    cpu = pool.cpu
    groups: Counter = Counter()
    for h in held:
        if h.need.group is not None:
            groups[h.need.group] += 1
        if h.need.gpus == 0:
            cpu -= 1
        for g in h.gpus:
            if g in free:  # a GPU the pool no longer has (the runner restarted with fewer) frees nothing
                free[g] -= h.need.share
    return free, cpu, groups


def schedule(pool: Pool, held: Iterable[Held], queue: Iterable[tuple[Hashable, Need]]) -> Plan:
    """Decide which queued jobs start now and on which GPUs (see the module docstring for the rule).

    `queue` is consumed lazily and only as far as anything could still start, so a caller may compute each need
    on demand.
    """
    free, cpu, groups = free_state(pool, held)
    plan = Plan()
    reserved: set[str] = set()
    cpu_reserved = False
    groups_reserved: set[str] = set()
    for key, need in queue:
        if (cpu_reserved or cpu < 1) and all(g in reserved or f <= 0 for g, f in free.items()):
            break  # every lane is full or reserved: nothing later can start now
        reason = why_impossible(pool, need)
        if reason is not None:
            plan.impossible.append((key, reason))
            continue
        group_ok = need.group is None or (
            need.group not in groups_reserved and (need.cap is None or groups[need.group] < need.cap))
        if need.gpus == 0:
            if group_ok and not cpu_reserved and cpu >= 1:
                cpu -= 1
                _count(groups, need)
                plan.start.append((key, ()))
                continue
            cpu_reserved = True
        else:
            mine = usable(pool, need)
            candidates = [g for g in mine if g not in reserved and free[g] >= need.share]
            if group_ok and len(candidates) >= need.gpus:
                order = {g: i for i, g in enumerate(pool.gpus)}
                chosen = sorted(candidates, key=lambda g: (-free[g], order[g]))[:need.gpus]
                chosen.sort(key=order.__getitem__)
                for g in chosen:
                    free[g] -= need.share
                _count(groups, need)
                plan.start.append((key, tuple(chosen)))
                continue
            reserved.update(mine)
        if need.group is not None and need.cap is not None:
            groups_reserved.add(need.group)
    return plan


def _count(groups: Counter, need: Need) -> None:
    if need.group is not None:
        groups[need.group] += 1


def busy(pool: Pool, held: Iterable[Held]) -> dict:
    """How many slots are busy, for `lab status`: GPU slots (in job shares) and CPU lanes."""
    held = list(held)
    free, cpu, _ = free_state(pool, held)
    return {
        "gpus": {g: float(WHOLE - f) for g, f in free.items()},
        "cpu_busy": pool.cpu - cpu,
        "cpu_lanes": pool.cpu,
        "running": len(held),
    }
