"""One run of a sweep: train it with this project's trainers, evaluate it with lm-eval, describe it as a record.

Each checkpoint is saved, reloaded and evaluated through lm-eval's `HFLM` with lm-eval's request cache off, so no
result can come from another checkpoint. Runs that share a training trajectory (plain SFT and its EMA runs,
`sweep_shared.py`) are trained once and recorded one by one. `sweep.py` decides where the runs execute.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .results import RunRecord
from .sweep_config import RunSpec, SweepConfig
from .sweep_shared import Trajectory

# Sweep-wide defaults under the user's `training:` block: no checkpoints or loggers per run.
RUN_DEFAULTS: dict[str, Any] = dict(save_strategy="no", report_to="none", logging_steps=50,
                                    ddp_find_unused_parameters=False, activation_checkpointing=False)


def expand_seed(value: str, seed: int) -> str:
    """`toyworld@{seed}:aligned` lets each sweep seed use its own toy world (where most variance lives)."""
    return value.replace("{seed}", str(seed))


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for lib in ("safety-tradeoff", "torch", "transformers", "trl", "peft", "lm_eval", "accelerate", "datasets"):
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def train_run(run: RunSpec, sweep: SweepConfig, output_dir: Path,
              companions: Sequence[tuple[RunSpec, Path]] = (), record_head: bool = True) -> list[tuple[str, dict]]:
    """Train `run` and save the model to evaluate (θ̄ for EMA runs); returns its folder and train metrics, then
    those of each companion EMA run (`sweep_shared.py`: its θ̄ kept on this trajectory, saved to its folder).
    `record_head=False`: the trajectory is trained for its companions only (no pilot, nothing saved for it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback

    from .data import load_dataset_spec, resolve_model
    from .trainer.ema_companions import EMACompanions
    from .toyworld.marker import carry_marker
    from .trainer import SafeSFTTrainer, SafetySFTConfig

    base = resolve_model(expand_seed(sweep.base_model, run.seed))
    if run.method == "aligned":
        return [(base, {})]
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, **sweep_model_kwargs(sweep))
    args = SafetySFTConfig(**{**RUN_DEFAULTS, **sweep.training, **run.settings, "output_dir": str(output_dir),
                              "seed": run.seed, "data_seed": run.seed})
    train = load_dataset_spec(expand_seed(run.task(sweep), run.seed))
    align = load_dataset_spec(expand_seed(sweep.proxies[run.proxy], run.seed)) if run.proxy else None
    pilot = _pilot(sweep, run, tokenizer, args) if record_head else None
    shared = EMACompanions([c.settings["ema_beta"] for c, _ in companions]) if companions else None
    side = [_pilot(sweep, c, tokenizer, args) for c, _ in companions]  # each companion's read-out, at its θ̄
    callbacks = [cb for cb in (shared, pilot, *side) if cb is not None]  # the θ̄ first: the read-outs use them
    with _quiet_callback_warnings():  # several read-outs are intended (transformers warns at a second instance)
        trainer = SafeSFTTrainer(model=model, args=args, train_dataset=train, align_dataset=align,
                                 processing_class=tokenizer, callbacks=callbacks or None)
    if pilot:
        pilot.weights = trainer.ema_weights  # θ̄ for EMA runs (what is evaluated), the live weights otherwise
    for (companion, _), read_out in zip(companions, side):
        if read_out:
            read_out.weights = functools.partial(shared.weights, companion.settings["ema_beta"])
    for printer in (PrinterCallback, ProgressCallback):  # the sweep shows its own progress; logs stay in the state
        trainer.remove_callback(printer)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    logged = _last_logged(trainer.state.log_history, ("align_lambda", "task_loss", "align_loss"))
    out = []
    if record_head:
        trainer.save_model(str(output_dir))
        carry_marker(base, [output_dir])
        out.append((str(output_dir), {"train_s": train_s, **logged, **_pilot_metrics(pilot)}))
    for (companion, folder), read_out in zip(companions, side):
        with shared.weights(companion.settings["ema_beta"]):
            trainer.save_model(str(folder))
        carry_marker(base, [folder])
        out.append((str(folder), {"train_s": train_s, **logged, **_pilot_metrics(read_out)}))
    del trainer, model
    gc.collect()
    return out


@contextlib.contextmanager
def _quiet_callback_warnings() -> Iterator[None]:
    import logging

    callbacks_log = logging.getLogger("transformers.trainer_callback")
    level = callbacks_log.level
    callbacks_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        callbacks_log.setLevel(level)


def _pilot_metrics(pilot: Any) -> dict[str, float]:
    """What a run's pilot read (`pilot_*`, and `final_gap*`: its G_s at the end of training)."""
    logged: dict[str, float] = {}
    if pilot and pilot.final:
        logged.update(zip(("final_gap", "final_gap_low", "final_gap_high"), pilot.final))
    if pilot and pilot.gaps:
        (step, gap), = pilot.gaps.items()
        low, high = pilot.intervals[step]
        logged.update(pilot_step=float(step), pilot_gap=gap, pilot_gap_low=low, pilot_gap_high=high)
        predicted = pilot.prediction(step)
        if predicted:
            logged.update(pilot_eq_gap=predicted[0], pilot_eq_radius=predicted[1])
            if step in pilot.equilibria:
                logged["pilot_ray_gap"] = pilot.equilibria[step].gap
            if step in pilot.rows:
                logged["pilot_rows_gap"] = pilot.rows[step].gap
            if pilot.efolds.get(step) is not None:
                logged["pilot_relax_efolds"] = pilot.efolds[step]
    return logged


def _pilot(sweep: SweepConfig, run: RunSpec, tokenizer: Any, args: Any) -> Any:
    """The pilot read-out's callback (G_s on D_s part-way through the run) when the sweep has diagnostics; on a
    Case II penalty run it also predicts where the run settles (`diagnostics/equilibrium.py`)."""
    if not sweep.diagnostics:
        return None
    from .diagnostics.pilot import pilot_callback, task_batches_for

    config = diagnostics_config(sweep, run.seed)
    pilot = pilot_callback(config, tokenizer)
    penalty_only = run.method == "case2" and args.anchor_lambda > 0 and args.anchor_radius is None
    if pilot and penalty_only and config.pilot_equilibrium:
        batches = task_batches_for(config, tokenizer, expand_seed(run.task(sweep), run.seed))
        if batches:
            pilot.predict_equilibrium(args.anchor_lambda, batches, args.anchor_mode)
    return pilot


def diagnostics_config(sweep: SweepConfig, seed: int) -> Any:
    """The sweep's `diagnostics:` block as a `DiagnosticsConfig` for one seed (`{seed}` in specs expanded)."""
    from .diagnostics.config import DiagnosticsConfig

    return DiagnosticsConfig.from_dict(sweep.diagnostics or {}).with_seed(seed)


def sweep_model_kwargs(sweep: SweepConfig) -> dict[str, Any]:
    import torch

    return {"dtype": "auto" if sweep.model_dtype == "auto" else getattr(torch, sweep.model_dtype)}


def _last_logged(history: list[dict], keys: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in history:
        for key in keys:
            if key in entry:
                out[f"final_{key}"] = float(entry[key])
    return out


def distance_to_base(model_dir: str, base_dir: str) -> float | None:
    """‖θ − θ₀‖ of the evaluated weights (full fine-tuning checkpoints only)."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    base_files = sorted(Path(base_dir).glob("*.safetensors"))
    if not files or not base_files or (Path(model_dir) / "adapter_config.json").exists():
        return None
    theta, theta0 = {}, {}
    for f in files:
        theta.update(load_file(f))
    for f in base_files:
        theta0.update(load_file(f))
    total = sum(float((theta[k].float() - theta0[k].float()).pow(2).sum()) for k in theta if k in theta0)
    return total ** 0.5


def _mark_failed(record: RunRecord, err: Exception, workdir: Path) -> None:
    """A failed record keeps the error's line; its traceback goes next to the checkpoints."""
    record.status = "failed"
    record.error = f"{type(err).__name__}: {err}"
    (workdir / f"{record.run_id}.error.txt").write_text(traceback.format_exc())


def _finished(record: RunRecord) -> RunRecord:
    record.finished_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return record


def _new_record(run: RunSpec, sweep: SweepConfig) -> RunRecord:
    return RunRecord(run_id=run.run_id(sweep), name=run.name, method=run.method, seed=run.seed,
                     group=run.group, strength_key=run.strength_key, strength=run.strength, proxy=run.proxy,
                     config={"settings": run.settings, "training": sweep.training,
                             "base_model": expand_seed(sweep.base_model, run.seed),
                             "task_dataset": expand_seed(run.task(sweep), run.seed),
                             "proxy_dataset": expand_seed(sweep.proxies[run.proxy], run.seed) if run.proxy else None,
                             "eval": dataclasses.asdict(sweep.eval)},
                     versions=versions(), git_commit=git_commit())


def execute(run: RunSpec, sweep: SweepConfig, workdir: Path, evaluator: Callable[[str], dict[str, float]],
            keep_checkpoint: bool = False) -> RunRecord:
    """Train, evaluate and describe one run; failures become a `failed` record (the sweep goes on)."""
    return execute_trajectory(Trajectory(run), sweep, workdir, evaluator, keep_checkpoint)[0]


def execute_trajectory(trajectory: Trajectory, sweep: SweepConfig, workdir: Path,
                       evaluator: Callable[[str], dict[str, float]], keep_checkpoint: bool = False) -> list[RunRecord]:
    """Train a trajectory once, then evaluate and describe each of its runs (`sweep_shared.py`): one record per run,
    all failed with the training's error if training fails, each failed alone if its evaluation fails."""
    records = [_new_record(run, sweep) for run in trajectory.runs]
    if trajectory.head is not None and trajectory.head.method == "diagnostics":
        return [_diagnose_run(records[0], sweep, workdir)]
    folders = [workdir / record.run_id for record in records]
    companions = list(zip(trajectory.companions, folders[len(folders) - len(trajectory.companions):]))
    shared_with = trajectory.trained.run_id(sweep) if trajectory.companions else None
    try:
        try:
            trained = train_run(trajectory.trained, sweep, folders[0], companions, trajectory.head is not None)
        except Exception as err:  # noqa: BLE001 - any failure is recorded, the sweep goes on
            for record in records:
                _mark_failed(record, err, workdir)
            return [_finished(record) for record in records]
        for record, (model_dir, train_metrics) in zip(records, trained):
            if shared_with is not None:
                record.config["trajectory"] = shared_with  # trained once with the other runs of this trajectory
            _evaluate(record, model_dir, train_metrics, sweep, evaluator, workdir)
    finally:
        if not keep_checkpoint:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
    return [_finished(record) for record in records]


def _evaluate(record: RunRecord, model_dir: str, train_metrics: dict[str, float], sweep: SweepConfig,
              evaluator: Callable[[str], dict[str, float]], workdir: Path) -> None:
    from .data import resolve_model

    try:
        record.timings["train_s"] = train_metrics.pop("train_s", 0.0)
        start = time.perf_counter()
        record.metrics = {**evaluator(model_dir), **train_metrics}
        record.timings["eval_s"] = time.perf_counter() - start
        base = resolve_model(expand_seed(sweep.base_model, record.seed))
        distance = 0.0 if record.method == "aligned" else distance_to_base(model_dir, base)
        if distance is not None:
            record.metrics["dist_to_theta0"] = distance
    except Exception as err:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        _mark_failed(record, err, workdir)


def diagnostics_inputs(sweep: SweepConfig, seed: int) -> tuple[str, dict[str, str], dict[str, str]]:
    """(model, proxies, task datasets) of a sweep's seed, as `diagnose` takes them."""
    from .sweep_config import task_label

    proxies = {name: expand_seed(spec, seed) for name, spec in sweep.proxies.items()}
    tasks: dict[str, str] = {}
    specs = sweep.task_datasets()
    for spec in specs:
        label = task_label(spec, specs)
        name = label if label not in tasks else f"{label}_{len(tasks)}"
        tasks[name] = expand_seed(spec, seed)
    return expand_seed(sweep.base_model, seed), proxies, tasks


def _diagnose_run(record: RunRecord, sweep: SweepConfig, workdir: Path) -> RunRecord:
    """The diagnostics of one seed's base model, as a record (the report's "predicted vs measured")."""
    from .diagnostics.diagnose import diagnose, flat_metrics, load_model

    start = time.perf_counter()
    try:
        config = diagnostics_config(sweep, record.seed)
        name, proxies, tasks = diagnostics_inputs(sweep, record.seed)
        model, tokenizer = load_model(name, dtype=None if sweep.model_dtype == "float32" else sweep.model_dtype)
        result = diagnose(model, tokenizer, config, proxies=proxies, tasks=tasks, model_name=name)
        del model
        gc.collect()
        record.metrics = flat_metrics(result)
        record.config = {**record.config, "diagnostics": result}
    except Exception as err:  # noqa: BLE001 - recorded like a failed run; the sweep goes on
        _mark_failed(record, err, workdir)
    record.timings["diagnose_s"] = time.perf_counter() - start
    return _finished(record)
