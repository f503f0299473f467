"""Run a sweep: train every run with this project's trainers, evaluate it with lm-eval, record it.

Runs are independent jobs. Locally they run one after another in this process (each checkpoint is
saved, reloaded and evaluated through lm-eval's `HFLM` with lm-eval's request cache off, so no result
can come from another checkpoint). With `executor="submitit"` each run is a submitit job: a local
subprocess (`cluster="local"`, tested here) or a Slurm job on a cluster, with no code change.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .results import ResultsStore, RunRecord
from .sweep_config import RunSpec, SweepConfig

# Sweep-wide defaults under the user's `training:` block: no checkpoints or loggers per run.
RUN_DEFAULTS: dict[str, Any] = dict(save_strategy="no", report_to="none", logging_steps=50,
                                    ddp_find_unused_parameters=False, activation_checkpointing=False)


def _expand_seed(value: str, seed: int) -> str:
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


# ----------------------------------------------------------------------------------------------
# One run
def train_run(run: RunSpec, sweep: SweepConfig, output_dir: Path) -> tuple[str, dict[str, float]]:
    """Train `run` and save the model to evaluate (θ̄ for EMA runs); returns its folder and train metrics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback

    from .data import load_dataset_spec, resolve_model
    from .toyworld.marker import carry_marker
    from .trainer import SafeSFTTrainer, SafetySFTConfig

    base = resolve_model(_expand_seed(sweep.base_model, run.seed))
    if run.method == "aligned":
        return base, {}
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, **sweep_model_kwargs(sweep))
    args = SafetySFTConfig(**{**RUN_DEFAULTS, **sweep.training, **run.settings, "output_dir": str(output_dir),
                              "seed": run.seed, "data_seed": run.seed})
    train = load_dataset_spec(_expand_seed(run.task(sweep), run.seed))
    align = load_dataset_spec(_expand_seed(sweep.proxies[run.proxy], run.seed)) if run.proxy else None
    pilot = _pilot(sweep, run, tokenizer, args)
    trainer = SafeSFTTrainer(model=model, args=args, train_dataset=train, align_dataset=align,
                             processing_class=tokenizer, callbacks=[pilot] if pilot else None)
    if pilot:
        pilot.weights = trainer.ema_weights  # θ̄ for EMA runs (what is evaluated), the live weights otherwise
    for printer in (PrinterCallback, ProgressCallback):  # the sweep shows its own progress; logs stay in the state
        trainer.remove_callback(printer)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    trainer.save_model(str(output_dir))
    carry_marker(base, [output_dir])
    logged = _last_logged(trainer.state.log_history, ("align_lambda", "task_loss", "align_loss"))
    if pilot and pilot.final:
        logged.update(zip(("final_gap", "final_gap_low", "final_gap_high"), pilot.final))
    if pilot and pilot.gaps:
        (step, gap), = pilot.gaps.items()
        low, high = pilot.intervals[step]
        logged.update(pilot_step=float(step), pilot_gap=gap, pilot_gap_low=low, pilot_gap_high=high)
        predicted = pilot.prediction(step)
        if predicted:
            logged.update(pilot_eq_gap=predicted[0], pilot_eq_radius=predicted[1],
                          pilot_ray_gap=pilot.equilibria[step].gap)
            if step in pilot.rows:
                logged["pilot_rows_gap"] = pilot.rows[step].gap
            if pilot.efolds.get(step) is not None:
                logged["pilot_relax_efolds"] = pilot.efolds[step]
    del trainer, model
    gc.collect()
    return str(output_dir), {"train_s": train_s, **logged}


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
        batches = task_batches_for(config, tokenizer, _expand_seed(run.task(sweep), run.seed))
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


def execute(run: RunSpec, sweep: SweepConfig, workdir: Path, evaluator: Callable[[str], dict[str, float]],
            keep_checkpoint: bool = False) -> RunRecord:
    """Train, evaluate and describe one run; failures become a `failed` record (the sweep goes on)."""
    record = RunRecord(run_id=run.run_id(sweep), name=run.name, method=run.method, seed=run.seed,
                       group=run.group, strength_key=run.strength_key, strength=run.strength, proxy=run.proxy,
                       config={"settings": run.settings, "training": sweep.training,
                               "base_model": _expand_seed(sweep.base_model, run.seed),
                               "task_dataset": _expand_seed(run.task(sweep), run.seed),
                               "proxy_dataset": _expand_seed(sweep.proxies[run.proxy], run.seed) if run.proxy else None,
                               "eval": dataclasses.asdict(sweep.eval)},
                       versions=versions(), git_commit=git_commit())
    out = workdir / record.run_id
    if run.method == "diagnostics":
        return _diagnose_run(record, sweep, workdir)
    try:
        model_dir, train_metrics = train_run(run, sweep, out)
        record.timings["train_s"] = train_metrics.pop("train_s", 0.0)
        start = time.perf_counter()
        record.metrics = {**evaluator(model_dir), **train_metrics}
        record.timings["eval_s"] = time.perf_counter() - start
        from .data import resolve_model

        base = resolve_model(_expand_seed(sweep.base_model, run.seed))
        distance = 0.0 if run.method == "aligned" else distance_to_base(model_dir, base)
        if distance is not None:
            record.metrics["dist_to_theta0"] = distance
    except Exception as err:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        _mark_failed(record, err, workdir)
    finally:
        if not keep_checkpoint:
            shutil.rmtree(out, ignore_errors=True)
    return _finished(record)


def diagnostics_inputs(sweep: SweepConfig, seed: int) -> tuple[str, dict[str, str], dict[str, str]]:
    """(model, proxies, task datasets) of a sweep's seed, as `diagnose` takes them."""
    from .sweep_config import task_label

    proxies = {name: _expand_seed(spec, seed) for name, spec in sweep.proxies.items()}
    tasks: dict[str, str] = {}
    specs = sweep.task_datasets()
    for spec in specs:
        label = task_label(spec, specs)
        name = label if label not in tasks else f"{label}_{len(tasks)}"
        tasks[name] = _expand_seed(spec, seed)
    return _expand_seed(sweep.base_model, seed), proxies, tasks


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


# ----------------------------------------------------------------------------------------------
# The sweep
def run_sweep(sweep: SweepConfig, results: str | Path, workdir: str | Path | None = None,
              executor: str = "local", executor_options: dict[str, Any] | None = None,
              keep_checkpoints: bool = False, log: Callable[[str], None] = print, jobs: int = 1) -> list[RunRecord]:
    """Train and evaluate every run not yet finished in `results`; returns this call's records.

    `jobs` > 1 (local executor) runs that many runs at a time in worker processes, each with its share of
    the CPU threads: on a CPU, two one-thread runs finish more work per minute than one two-thread run.
    """
    from .evaluation import LmEvalEvaluator

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    store = ResultsStore(results)
    check_chat_templates(sweep)
    runs = sweep.expand()
    finished = store.finished()
    todo = [r for r in runs if r.run_id(sweep) not in finished]
    log(f"sweep '{sweep.name}': {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to do")
    workdir = Path(workdir or Path(results).with_suffix("")) / "checkpoints"
    workdir.mkdir(parents=True, exist_ok=True)
    if executor == "submitit":
        return _run_submitit(todo, sweep, store, workdir, executor_options or {}, keep_checkpoints, log)
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'submitit'")
    if jobs > 1 and len(todo) > 1:
        return _run_parallel(todo, sweep, store, workdir, keep_checkpoints, jobs, log)
    evaluator = LmEvalEvaluator(sweep.eval)
    records = []
    with _progress() as bar:
        task = bar.add_task("", total=len(todo))
        for run in todo:
            bar.update(task, description=f"{run.name} (seed {run.seed})")
            record = execute(run, sweep, workdir, evaluator, keep_checkpoints)
            _done(record, store, records, bar)
            bar.advance(task)
    return records


def check_chat_templates(sweep: SweepConfig) -> None:
    """With `eval.apply_chat_template` (the default), every seed's base model must have a chat template: the
    safety tasks would refuse it only after the first run's training. Prepares the base models (worlds are
    built here, which the first run would do anyway)."""
    from transformers import AutoTokenizer

    from .data import resolve_model
    from .sweep_config import SweepConfigError

    if not sweep.eval.apply_chat_template:
        return
    for seed in sweep.seeds:
        base = resolve_model(_expand_seed(sweep.base_model, seed))
        if not getattr(AutoTokenizer.from_pretrained(base), "chat_template", None):
            raise SweepConfigError(
                f"eval.apply_chat_template: the tokenizer of base_model {base} has no chat template, so the safety "
                "tasks cannot run it as a chat model; give a chat model, add a template to its tokenizer, or set "
                "eval.apply_chat_template: false (plain prompts)")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.description}"), transient=False)


def _done(record: RunRecord, store: ResultsStore, records: list[RunRecord], bar) -> None:
    """A finished run is stored at once (a killed sweep keeps it) and failures are shown as they happen."""
    store.append(record)
    records.append(record)
    if not record.ok:
        bar.console.print(f"[red]run failed[/red] {record.name} (seed {record.seed}): {record.error}")


# Longest runs first, so parallel workers finish together: Case I runs two forwards per step, a Case II penalty run
# with diagnostics solves for its equilibrium at the pilot step (toy world: 16-18 s against 8 s for plain SFT).
_COST = {"case1": 0, "case1_constraint": 0, "combo": 0, "case2": 0}


def _run_parallel(todo: list[RunSpec], sweep: SweepConfig, store: ResultsStore, workdir: Path,
                  keep_checkpoints: bool, jobs: int, log: Callable[[str], None]) -> list[RunRecord]:
    """`jobs` worker processes (spawned, each with its share of the CPU threads) run the runs; the parent
    builds every seed's base model first (so no two workers build one world) and writes every record."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .data import resolve_model

    for seed in sorted({run.seed for run in todo}):
        resolve_model(_expand_seed(sweep.base_model, seed))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(f"running {min(jobs, len(todo))} runs at a time, {threads} CPU thread(s) each")
    ordered = sorted(todo, key=lambda r: _COST.get(r.method, 1))
    records: list[RunRecord] = []
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads,))
    try:
        with _progress() as bar:
            task = bar.add_task("", total=len(todo))
            with _worker_environment(threads):  # the workers start during the submits
                futures = {pool.submit(_worker_run, run, sweep, str(workdir), keep_checkpoints): run
                           for run in ordered}
            for future in as_completed(futures):
                run = futures[future]
                bar.update(task, description=f"finished {run.name} (seed {run.seed})")
                _done(future.result(), store, records, bar)
                bar.advance(task)
    except BaseException:  # Ctrl-C or a dead worker: stop the runs in progress (only they are lost), then raise
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return records


_WORKER_EVALUATOR: dict[str, Any] = {}


@contextlib.contextmanager
def _worker_environment(threads: int) -> Iterator[None]:
    """The environment the workers start with: set before they import torch or tqdm, which read it once.
    No progress bars in workers (two workers' training bars would interleave; the sweep's bar stays)."""
    import os

    wanted = {"OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _worker_run(run: RunSpec, sweep: SweepConfig, workdir: str, keep_checkpoint: bool) -> RunRecord:
    """One run in a worker process; the lm-eval task index is built once per worker."""
    from .evaluation import LmEvalEvaluator

    if "evaluator" not in _WORKER_EVALUATOR:
        _WORKER_EVALUATOR["evaluator"] = LmEvalEvaluator(sweep.eval)
    return execute(run, sweep, Path(workdir), _WORKER_EVALUATOR["evaluator"], keep_checkpoint)


def _run_submitit(todo: list[RunSpec], sweep: SweepConfig, store: ResultsStore, workdir: Path,
                  options: dict[str, Any], keep_checkpoints: bool, log: Callable[[str], None]) -> list[RunRecord]:
    try:
        import submitit
    except ImportError:
        raise RuntimeError("executor 'submitit' needs the submitit package: pip install 'safety-tradeoff[slurm]'") from None
    cluster = options.pop("cluster", "local")
    executor = submitit.AutoExecutor(folder=str(workdir / "submitit"), cluster=cluster)
    executor.update_parameters(**({"timeout_min": 60} | options))
    jobs = [executor.submit(_job, run, sweep, str(workdir), keep_checkpoints, str(store.path)) for run in todo]
    log(f"submitted {len(jobs)} job(s) to submitit ({cluster})")
    records = []
    for job in jobs:
        record = job.result()
        records.append(record)
        log(f"{'done' if record.ok else 'FAILED'}: {record.name} (seed {record.seed})")
    return records


def _job(run: RunSpec, sweep: SweepConfig, workdir: str, keep_checkpoint: bool, results: str) -> RunRecord:
    """One submitit job: a fresh process trains, evaluates and appends its own record (so a killed
    sweep keeps every finished job's result)."""
    from .evaluation import LmEvalEvaluator

    record = execute(run, sweep, Path(workdir), LmEvalEvaluator(sweep.eval), keep_checkpoint)
    ResultsStore(results).append(record)
    return record
