"""Records -> leaderboard rows: group by configuration, the gaps G_s and G_f per record, mean ± std over seeds.

Conventions (also written into the outputs):
- A *configuration* is a run identity minus its seed: (name, method, group, proxy, strength).
- G_s = alignment NLL − the reference aligned model's, per seed when the reference has that seed (seed =
  world seed in the toy world, so pairing removes world-to-world variance), else against the reference's
  mean. Positive = safety lost.
- G_f (metric) = the capability reference's capability − the run's: plain SFT (method ``sft``) in a
  sweep, the reference model in a leaderboard of checkpoints. Positive = capability given up. For the
  papers' loss-based gap, G_f (NLL) = task NLL − the reference's.
- Std is the sample standard deviation (ddof = 1); a row of one evaluation carries lm-eval's standard
  error instead (``stderr/<metric>`` in the record), when lm-eval computed one.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..results import LOWER_IS_BETTER, RunRecord, finite

METHOD_ORDER = ["aligned", "sft", "case1", "case1_constraint", "case2", "case2_ball", "ema", "combo"]
STDERR_PREFIX = "stderr/"  # record metric "stderr/<metric>": lm-eval's standard error of <metric>


@dataclass(frozen=True)
class Stat:
    """Mean ± sample std of one metric over the seeds of one configuration; for a single evaluation,
    lm-eval's standard error when it reported one."""
    mean: float
    std: float  # NaN when n < 2
    n: int
    stderr: float = math.nan  # lm-eval's standard error (n == 1 only)

    @classmethod
    def of(cls, values: Sequence[float], stderr: float | None = None) -> Stat:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan,
                   len(values), stderr if stderr is not None and len(values) == 1 else math.nan)

    @property
    def spread(self) -> float:
        """The interval half-width shown and drawn: the std over seeds, else the standard error (NaN: none)."""
        return self.std if not math.isnan(self.std) else self.stderr


@dataclass
class ConfigRow:
    """One leaderboard row: all ok seeds of one configuration, aggregated."""
    name: str
    method: str
    group: str
    proxy: str | None
    strength_key: str | None
    strength: float | None
    seeds: list[int]
    run_ids: list[str]
    n_failed: int = 0
    metrics: dict[str, Stat] = field(default_factory=dict)
    reference: str | None = None  # "aligned" / "sft" for the rows the gaps are measured against

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def label(self) -> str:
        """The curve label: the group, else the name (aligned/sft rows usually have no group)."""
        return self.group or self.name

    def mean(self, key: str) -> float:
        stat = self.metrics.get(key)
        return stat.mean if stat else math.nan


def record_values(record: RunRecord) -> dict[str, float]:
    """Numeric metrics of one record, plus train time; None/NaN/non-numbers dropped (rendered as –), standard
    errors (``stderr/<metric>``) kept apart (:func:`record_stderr`)."""
    out = {k: v for k, v in ((k, finite(v)) for k, v in (record.metrics or {}).items())
           if v is not None and not k.startswith(STDERR_PREFIX)}
    train_s = finite((record.timings or {}).get("train_s"))
    if train_s is not None:
        out["train_s"] = train_s
    return out


def record_stderr(record: RunRecord) -> dict[str, float]:
    """lm-eval's standard errors in a record: metric -> stderr."""
    return {k[len(STDERR_PREFIX):]: v for k, v in ((k, finite(v)) for k, v in (record.metrics or {}).items())
            if v is not None and k.startswith(STDERR_PREFIX)}


def config_key(record: RunRecord) -> tuple:
    """A run's identity minus its seed: the rows of the leaderboard."""
    return (record.name, record.method, record.group or "", record.proxy, record.strength_key, record.strength)


def reference_row(rows: Sequence[ConfigRow], role: str) -> ConfigRow | None:
    """The row the gaps are measured against: role "aligned" (G_s) or "sft" (G_f)."""
    return next((r for r in rows if r.reference == role), None)


def _sort_key(row: ConfigRow) -> tuple:
    method_rank = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
    strength = row.strength if row.strength is not None else -math.inf
    return (method_rank, row.method, row.group, strength, row.name)


def _pick_reference(groups: dict[tuple, list[RunRecord]], method: str, name: str | None,
                    notes: list[str]) -> tuple | None:
    """The reference configuration (aligned model / plain SFT). Several: the named one, else the one with
    most seeds (a note says which), so gaps never silently mix references."""
    keys = [k for k in groups if k[1] == method and (name is None or k[0] == name)]
    if not keys:
        return None
    keys.sort(key=lambda k: (-len(groups[k]), k[0]))
    if len(keys) > 1:
        notes.append(f"{len(keys)} '{method}' configurations; gaps use '{keys[0][0]}' as the reference "
                     f"(others: {', '.join(k[0] for k in keys[1:])})")
    return keys[0]


def _per_seed(records: list[RunRecord], metric: str) -> dict[int, float]:
    by_seed: dict[int, list[float]] = defaultdict(list)
    for record in records:
        value = record_values(record).get(metric)
        if value is not None:
            by_seed[record.seed].append(value)
    return {seed: statistics.fmean(values) for seed, values in by_seed.items()}


def _gap(value: float | None, seed: int, ref: dict[int, float], sign: float) -> float | None:
    """sign·(value − reference at this seed, else reference mean); None when either side is missing."""
    if value is None or not ref:
        return None
    reference = ref.get(seed, statistics.fmean(ref.values()))
    return sign * (value - reference)


def _named_reference(groups: dict[tuple, list[RunRecord]], name: str) -> tuple:
    keys = sorted((k for k in groups if k[0] == name), key=lambda k: -len(groups[k]))
    if not keys:
        raise ValueError(f"reference {name!r} is not among the rows: {', '.join(sorted({k[0] for k in groups}))}")
    return keys[0]


def aggregate(records: Iterable[RunRecord], *, capability_metric: str = "task_accuracy",
              aligned_name: str | None = None, sft_name: str | None = None, reference: str | None = None,
              notes: list[str] | None = None) -> tuple[list[ConfigRow], list[RunRecord]]:
    """Group ok records by configuration, add the gaps G_s and G_f per record, and average over seeds.

    The gaps are measured against the aligned model (G_s) and plain SFT (G_f) of a sweep, or, with
    `reference` (a row name, e.g. the aligned model of a leaderboard of checkpoints), both against that
    row (``ValueError`` if no row has the name). Returns (rows sorted by method, group, strength; failed
    records). Failed records are never dropped: they come back separately, and each row counts its
    failed seeds.
    """
    notes = notes if notes is not None else []
    records = list(records)
    failed = [r for r in records if not r.ok]
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.ok:
            groups[config_key(record)].append(record)
    failed_per_key: dict[tuple, int] = defaultdict(int)
    for record in failed:
        failed_per_key[config_key(record)] += 1

    if reference is not None:
        aligned, sft = _named_reference(groups, reference), None
        capability_ref = aligned
    else:
        aligned = _pick_reference(groups, "aligned", aligned_name, notes)
        sft = capability_ref = _pick_reference(groups, "sft", sft_name, notes)
    ref_align = _per_seed(groups[aligned], "alignment_nll") if aligned else {}
    cap_sign = 1.0 if capability_metric in LOWER_IS_BETTER else -1.0  # gap > 0 = capability lost
    ref_cap = _per_seed(groups[capability_ref], capability_metric) if capability_ref else {}
    ref_task_nll = _per_seed(groups[capability_ref], "task_nll") if capability_ref else {}

    rows = []
    for key, members in groups.items():
        values: dict[str, list[float]] = defaultdict(list)
        for record in members:
            v = record_values(record)
            v["safety_gap"] = _gap(v.get("alignment_nll"), record.seed, ref_align, 1.0)
            v["capability_gap"] = _gap(v.get(capability_metric), record.seed, ref_cap, cap_sign)
            v["capability_gap_nll"] = _gap(v.get("task_nll"), record.seed, ref_task_nll, 1.0)
            for metric, value in v.items():
                if value is not None:
                    values[metric].append(value)
        seeds = [r.seed for r in members]
        if len(set(seeds)) < len(seeds):
            notes.append(f"'{key[0]}' has several records for one seed ({sorted(seeds)}): its runs differ in "
                         "something the name does not say; they are averaged together")
        name, method, group, proxy, strength_key, strength = key
        stderr = record_stderr(members[0]) if len(members) == 1 else {}
        rows.append(ConfigRow(name=name, method=method, group=group, proxy=proxy, strength_key=strength_key,
                              strength=strength, seeds=sorted(seeds), run_ids=[r.run_id for r in members],
                              n_failed=failed_per_key.get(key, 0),
                              metrics={m: Stat.of(vs, stderr.get(m)) for m, vs in values.items()},
                              reference="aligned" if key == aligned else "sft" if key == sft else None))
    rows.sort(key=lambda r: (r.reference is None, _sort_key(r)))  # the references first
    failed.sort(key=lambda r: (config_key(r)[0], r.seed))
    return rows, failed
