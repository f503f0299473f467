"""Runs of a sweep that share one training trajectory: plain SFT and its EMA runs.

An EMA run trains θ exactly as plain SFT does (the EMA only reads θ after each optimizer step) and is evaluated at
θ̄ ← β·θ̄ + (1 − β)·θ. A sweep with plain SFT and EMA at several β therefore trains the same trajectory once per β
plus once more; here it trains it once and keeps every β's θ̄ beside it (`trainer/ema_companions.py`: the update
of `EMAShadow`, which `EMASFTTrainer` uses, after the same optimizer steps, from the same θ₀). The demo's three EMA runs
cost a quarter of their training time this way; each is still evaluated, scored and recorded as its own run.

`tests/test_sweep.py` checks that θ̄ kept this way equals, bit for bit, the θ̄ of an EMA run trained on its own, and
that the trajectory is plain SFT's. Shared only where that holds by construction: EMA runs that differ from the
trajectory's run only in `ema_beta`, with the EMA's defaults otherwise (fp32 shadow, updated every step), no
EMA, Case I or Case II setting in the sweep's `training:` block, and no fp16 (whose skipped steps the EMA does not
count).

The cost: the trajectory holds one fp32 copy of the trainable parameters per shared β at once (an EMA run alone
holds one). Where that does not fit (a large model fully fine-tuned on one GPU), `share_trajectories: false` in the
sweep YAML trains every EMA run on its own.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .sweep_config import RunSpec, SweepConfig


@dataclass
class Trajectory:
    """One training of `settings` on a seed's task data; `head` is the run it is (None when only its EMA runs are
    still to do: the trajectory is then trained for them without a record of its own), `companions` the EMA runs
    that read it."""

    head: RunSpec | None
    companions: list[RunSpec] = field(default_factory=list)

    @property
    def runs(self) -> list[RunSpec]:
        return ([self.head] if self.head else []) + self.companions

    @property
    def trained(self) -> RunSpec:
        """The run whose settings are trained: the head, or the first companion without its `ema_beta`."""
        if self.head is not None:
            return self.head
        first = self.companions[0]
        return RunSpec("sft", first.name, first.group, first.seed, _without_beta(first.settings),
                       task_dataset=first.task_dataset)


def _without_beta(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != "ema_beta"}


def _plain(settings: dict[str, Any]) -> bool:
    """No EMA, Case I or Case II mechanism in `settings` (`align_batch_size` alone does nothing without a proxy)."""
    return not any(k.startswith(("ema_", "anchor_", "align_")) and k != "align_batch_size" for k in settings)


def _can_head(run: RunSpec, sweep: SweepConfig) -> bool:
    """A plain SFT run whose training is the trajectory: no proxy, and no sweep-wide or own EMA/Case I/II setting
    (a sweep-wide `ema_beta` would make it an EMA run that saves its own θ̄ over the companions')."""
    return run.method == "sft" and run.proxy is None and _plain({**sweep.training, **run.settings})


def _shareable(run: RunSpec, sweep: SweepConfig) -> bool:
    """An EMA run whose θ̄ the companions reproduce exactly (see the module's docstring)."""
    if not sweep.share_trajectories or run.method != "ema" or run.proxy is not None or not _plain(sweep.training):
        return False
    settings = {**sweep.training, **run.settings}
    # another EMA setting, or a Case I/II mechanism acting after the optimizer step, would make the θ̄ differ
    return (_plain(_without_beta(run.settings)) and not settings.get("fp16")
            and isinstance(settings.get("ema_beta"), float))


def _key(run: RunSpec, sweep: SweepConfig) -> str:
    return json.dumps([run.seed, run.task(sweep), _without_beta(run.settings)], sort_keys=True, default=str)


def plan(todo: Sequence[RunSpec], sweep: SweepConfig) -> list[Trajectory]:
    """`todo` as trajectories, in the order given: each shareable EMA run joins the plain SFT run with its other
    settings (or the first such EMA run's trajectory); every other run is a trajectory of its own."""
    out: list[Trajectory] = []
    by_key: dict[str, Trajectory] = {}
    heads = {_key(r, sweep): r for r in todo if _can_head(r, sweep)}
    for run in todo:
        if not _shareable(run, sweep):
            if _can_head(run, sweep) and _key(run, sweep) in by_key:
                continue  # already placed as the head of its EMA runs' trajectory
            trajectory = Trajectory(run)
            if _can_head(run, sweep):
                by_key[_key(run, sweep)] = trajectory
            out.append(trajectory)
            continue
        key = _key(run, sweep)
        if key not in by_key:
            by_key[key] = Trajectory(heads.get(key))
            out.append(by_key[key])
        by_key[key].companions.append(run)
    # a lone EMA run shares with nothing: it trains as itself (`EMASFTTrainer`)
    return [Trajectory(t.companions[0]) if t.head is None and len(t.companions) == 1 else t for t in out]
