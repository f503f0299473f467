"""Sweep configuration: which runs to train and evaluate, validated before any training starts.

A sweep YAML::

    base_model: toyworld:aligned            # Hub id, local folder or toyworld:aligned
    task_dataset: toyworld:task_high_overlap
    proxies: {near: toyworld:proxy_near, far: toyworld:proxy_far}
    seeds: [0]
    training: {max_steps: 150, learning_rate: 1.0e-3, ...}   # SafetySFTConfig fields shared by every run
    eval:
      tasks: [safety_tradeoff_toy]          # lm-eval tasks run on every checkpoint
      batch_size: 64
    methods:
      - method: sft
      - {method: case1, proxy: [near, far], align_lambda: [0.01, 0.1, 1.0]}
      - {method: case2, anchor_lambda: [0.01, 0.1, 1.0]}
      - {method: ema, ema_beta: [0.98, 0.99]}

In a `methods` entry, a list value is a grid axis (the runs are the product of all axes); any
`SafetySFTConfig` field may be set or swept (e.g. `learning_rate: [1e-4, 1e-3]` for Kim et al.'s
optimisation sweeps). An entry's own `task_dataset` (a spec or a list of specs) replaces the sweep's
for its runs, e.g. `{method: sft, task_dataset: toyworld@{seed}:task_low_overlap}` for a second
context-overlap level. The untouched aligned model and plain SFT are always included.

`share_trajectories: false` trains each EMA run on its own instead of on plain SFT's trajectory (the same results;
see `sweep_shared.py` for when sharing applies and what it costs in memory).

An optional `diagnostics:` block (fields of `safety_tradeoff.diagnostics.DiagnosticsConfig`, at least
`safety_dataset`, the original safety data D_s) runs `safety-tradeoff diagnose` on the base model once
per seed, so the report can set the theory's predictions beside the measured gaps.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# method -> (settings it implies, the knob its curve is drawn over, whether it needs a proxy set)
METHODS: dict[str, tuple[dict[str, Any], str | None, bool]] = {
    "sft": ({}, None, False),
    "case1": ({"align_mode": "penalty"}, "align_lambda", True),
    "case1_constraint": ({"align_mode": "constraint"}, "align_epsilon", True),
    "case2": ({"anchor_mode": "grad"}, "anchor_lambda", False),
    "case2_ball": ({}, "anchor_radius", False),
    "ema": ({}, "ema_beta", False),
    "combo": ({}, None, False),
}
LABELS = {"sft": "plain SFT", "case1": "Case I", "case1_constraint": "Case I constraint", "case2": "Case II",
          "case2_ball": "Case II ball", "ema": "EMA", "combo": "combined", "aligned": "aligned θ₀", "diagnostics": "diagnostics"}
SHORT = {"learning_rate": "lr", "per_device_train_batch_size": "bs", "max_steps": "steps",
         "gradient_accumulation_steps": "ga"}
SYMBOLS = {"align_lambda": "λ", "align_epsilon": "ε", "anchor_lambda": "λ", "anchor_radius": "r", "ema_beta": "β"}
_ENTRY_KEYS = {"method", "name", "proxy", "task_dataset"}
_TOP_KEYS = {"base_model", "task_dataset", "proxies", "seeds", "training", "eval", "methods", "name", "model_dtype",
             "diagnostics", "share_trajectories"}


class SweepConfigError(ValueError):
    """A sweep configuration problem; the message names the offending key."""


@dataclass
class EvalSpec:
    tasks: list[str] = field(default_factory=lambda: ["safety_tradeoff_toy"])
    batch_size: int = 64
    max_length: int | None = None
    apply_chat_template: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)  # passed to the lm-eval TaskManager
    judge: dict[str, Any] | None = None  # judge scoring of the harmful tasks (keys: safety_tradeoff.judges.config)


@dataclass(frozen=True)
class RunSpec:
    """One training run (or the aligned model itself, method "aligned")."""

    method: str
    name: str
    group: str
    seed: int
    settings: dict[str, Any]  # SafetySFTConfig overrides for this run
    proxy: str | None = None
    strength_key: str | None = None
    strength: float | None = None
    task_dataset: str | None = None  # this run's task data when it is not the sweep's

    def task(self, sweep: SweepConfig) -> str:
        """The task dataset spec this run fine-tunes on (`{seed}` not yet substituted)."""
        return self.task_dataset or sweep.task_dataset

    def run_id(self, sweep: SweepConfig) -> str:
        payload = {"method": self.method, "settings": self.settings, "seed": self.seed, "proxy": self.proxy,
                   "proxy_data": sweep.proxies.get(self.proxy) if self.proxy else None,
                   "base_model": sweep.base_model, "task": self.task(sweep),
                   "training": sweep.training if self.method != "aligned" else {},
                   "eval": {k: v for k, v in dataclasses.asdict(sweep.eval).items()
                            if k != "judge" or v is not None}}  # no judge: the run ids sweeps already have
        if self.method == "diagnostics":
            payload = {"method": self.method, "seed": self.seed, "base_model": sweep.base_model,
                       "diagnostics": sweep.diagnostics, "proxies": sweep.proxies, "tasks": sweep.task_datasets()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class SweepConfig:
    base_model: str
    task_dataset: str
    methods: list[dict[str, Any]]
    proxies: dict[str, str] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    training: dict[str, Any] = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    name: str = "sweep"
    model_dtype: str = "float32"  # dtype the base model is loaded in ("auto", "bfloat16", ...)
    diagnostics: dict[str, Any] | None = None  # DiagnosticsConfig fields; None: no diagnostics runs
    # plain SFT and its EMA runs train one trajectory (sweep_shared.py); false: each EMA run trains alone (one fp32
    # copy of the trainable parameters per β instead of all at once). Results are the same either way.
    share_trajectories: bool = True

    def task_datasets(self) -> list[str]:
        """Every task dataset spec the sweep fine-tunes on: the sweep's, then entries' own, in order."""
        specs = [self.task_dataset]
        for entry in self.methods:
            value = entry.get("task_dataset") if isinstance(entry, dict) else None
            for spec in value if isinstance(value, list) else [value] if value else []:
                if spec not in specs:
                    specs.append(str(spec))
        return specs

    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepConfig:
        path = Path(path)
        if not path.is_file():
            raise SweepConfigError(f"sweep config not found: {path}")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise SweepConfigError(f"{path}: not valid YAML ({err})") from None
        return cls.from_dict(values, source=str(path))

    @classmethod
    def from_dict(cls, values: Any, source: str = "sweep config") -> SweepConfig:
        if not isinstance(values, dict):
            raise SweepConfigError(f"{source}: expected a mapping at the top level")
        unknown = sorted(set(values) - _TOP_KEYS)
        if unknown:
            raise SweepConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}")
        for key in ("base_model", "task_dataset", "methods"):
            if not values.get(key):
                raise SweepConfigError(f"{source}: '{key}' is required")
        eval_values = values.get("eval") or {}
        eval_keys = {f.name for f in dataclasses.fields(EvalSpec)}
        bad = sorted(set(eval_values) - eval_keys)
        if bad:
            raise SweepConfigError(f"{source}: unknown key(s) eval.{', eval.'.join(bad)}; known: {', '.join(sorted(eval_keys))}")
        if eval_values.get("judge") is not None:
            from .judges.config import check_judge_config

            try:
                check_judge_config(eval_values["judge"])
            except ValueError as err:
                raise SweepConfigError(f"{source}: {err}") from None
        seeds = values.get("seeds", [0])
        seeds = seeds if isinstance(seeds, list) else [seeds]
        if not seeds or not all(isinstance(s, int) for s in seeds):
            raise SweepConfigError(f"{source}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
        config = cls(base_model=str(values["base_model"]), task_dataset=str(values["task_dataset"]),
                     methods=list(values["methods"]), proxies=dict(values.get("proxies") or {}), seeds=seeds,
                     training=dict(values.get("training") or {}), eval=EvalSpec(**eval_values),
                     name=str(values.get("name", "sweep")), model_dtype=str(values.get("model_dtype", "float32")),
                     diagnostics=_check_diagnostics(values.get("diagnostics"), source),
                     share_trajectories=_check_bool(values.get("share_trajectories", True), "share_trajectories",
                                                    source))
        config.expand()  # validates every entry
        return config

    # ------------------------------------------------------------------------------------------
    def expand(self) -> list[RunSpec]:
        """All runs: the aligned model, plain SFT, then every method entry's grid, for every seed."""
        fields = _config_fields()
        _check_settings(self.training, fields, "training")
        runs: list[RunSpec] = []
        # the bare plain-SFT baseline is always run; `sft` entries with settings add SFT variants
        # (e.g. Kim et al.'s learning-rate / batch-size sweeps) next to it
        entries = [("methods (implicit plain SFT)", {"method": "sft"})]
        entries += [(f"methods[{i}]", m) for i, m in enumerate(self.methods) if m != {"method": "sft"}]
        for seed in self.seeds:
            runs.append(RunSpec("aligned", LABELS["aligned"], LABELS["aligned"], seed, {}))
            if self.diagnostics is not None:
                runs.append(RunSpec("diagnostics", LABELS["diagnostics"], LABELS["diagnostics"], seed, {}))
            for where, entry in entries:
                runs += self._expand_entry(entry, seed, fields, where)
        unique = {}  # an entry may repeat a run (e.g. its task_dataset is the sweep's): train it once
        for run in runs:
            unique.setdefault(run.run_id(self), run)
        return list(unique.values())

    def _expand_entry(self, entry: Any, seed: int, fields: set[str], where: str) -> list[RunSpec]:
        if not isinstance(entry, dict) or "method" not in entry:
            raise SweepConfigError(f"{where}: each method entry is a mapping with a 'method' key")
        method = entry["method"]
        if method not in METHODS:
            raise SweepConfigError(f"{where}.method: unknown method {method!r}; known: {', '.join(METHODS)}")
        implied, strength_key, needs_proxy = METHODS[method]
        settings = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
        _check_settings(settings, fields, where)
        tasks = entry.get("task_dataset")
        tasks = tasks if isinstance(tasks, list) else [tasks] if tasks is not None else [None]
        if not tasks or not all(t is None or isinstance(t, str) and t for t in tasks):
            raise SweepConfigError(f"{where}.task_dataset: expected a dataset spec or a non-empty list of them")
        proxies = entry.get("proxy")
        proxies = proxies if isinstance(proxies, list) else [proxies] if proxies is not None else [None]
        if needs_proxy or method == "combo" and proxies != [None]:
            self._check_proxies(proxies, where)
        elif proxies != [None]:
            raise SweepConfigError(f"{where}.proxy: method {method!r} does not use a proxy safety set")
        if strength_key and strength_key not in settings:
            raise SweepConfigError(f"{where}: method {method!r} needs '{strength_key}' (a value or a list to sweep)")
        axes = {k: v for k, v in settings.items() if isinstance(v, list)}
        for key, values in axes.items():
            if not values:
                raise SweepConfigError(f"{where}.{key}: empty list; give at least one value")
        runs = []
        for proxy, task in itertools.product(proxies, tasks):
            for combo in itertools.product(*axes.values()) if axes else [()]:
                run_settings = {**implied, **settings, **dict(zip(axes, combo))}
                strength = run_settings.get(strength_key) if strength_key else None
                # other knobs (learning rate, batch size, ...: swept, or set on an unnamed entry) and other task
                # data make separate curves, so runs that differ in them never share a name (or a leaderboard row)
                shown = {**({} if entry.get("name") else settings), **dict(zip(axes, combo))}
                extra = ", ".join([_setting_label(k, v) for k, v in shown.items() if k != strength_key]
                                  + ([f"task={task_label(task, tasks)}"] if task and (len(tasks) > 1 or not entry.get("name"))
                                     else []))
                group = _group_name(method, proxy, entry.get("name")) + (f" ({extra})" if extra else "")
                name = group
                if strength is not None:
                    base = _group_name(method, proxy, entry.get("name"))
                    name = f"{base} {SYMBOLS.get(strength_key, strength_key)}={strength:g}" + (f" ({extra})" if extra else "")
                runs.append(RunSpec(method, name, group, seed, run_settings, proxy, strength_key, strength, task))
        return runs

    def _check_proxies(self, proxies: list, where: str) -> None:
        if proxies == [None]:
            raise SweepConfigError(f"{where}.proxy: Case I needs a proxy safety set (one of: "
                                   f"{', '.join(self.proxies) or 'none defined under proxies:'})")
        for proxy in proxies:
            if proxy not in self.proxies:
                raise SweepConfigError(f"{where}.proxy: unknown proxy {proxy!r}; defined under proxies: "
                                       f"{', '.join(self.proxies) or 'none'}")


def task_label(spec: str, others: list | None = None) -> str:
    """A short name for a task dataset spec: the toy split or the file/folder stem; the whole spec when
    another spec of `others` has the same short name."""
    def short(value: str) -> str:
        tail = value.rsplit(":", 1)[-1] if value.startswith(("toyworld", "smollm2")) else value
        return Path(tail).stem or tail

    label = short(spec)
    clash = any(o and o != spec and short(o) == label for o in others or [])
    return spec if clash else label


def _check_bool(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise SweepConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
    return value


def _check_diagnostics(values: Any, source: str) -> dict[str, Any] | None:
    if values is None:
        return None
    from .diagnostics.config import DiagnosticsConfig

    if not isinstance(values, dict):
        raise SweepConfigError(f"{source}: 'diagnostics' must be a mapping of DiagnosticsConfig fields")
    try:
        DiagnosticsConfig.from_dict(values)
    except ValueError as err:
        raise SweepConfigError(f"{source}: diagnostics.{err}") from None
    return dict(values)


def _setting_label(key: str, value: Any) -> str:
    """`lr=0.001`, `bs=8`, `align_batch_size=4`: a setting as it appears in a run's name."""
    shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return f"{SHORT.get(key, key)}={shown}"


def _group_name(method: str, proxy: str | None, custom: str | None) -> str:
    if custom:
        return custom
    return f"{LABELS[method]} {proxy}" if proxy else LABELS[method]


def _config_fields() -> set[str]:
    from .trainer import SafetySFTConfig

    return {f.name for f in dataclasses.fields(SafetySFTConfig)}


def _check_settings(settings: dict[str, Any], fields: set[str], where: str) -> None:
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise SweepConfigError(f"{where}: unknown setting(s) {', '.join(unknown)} (not SafetySFTConfig fields)")
