"""Run a sweep: every run not yet recorded, one after another in this process, two or more at a time in worker
processes (`sweep_workers.py`), or as submitit jobs; each record is stored as soon as its run finishes.

With `executor="submitit"` each run is a submitit job: a local subprocess (`cluster="local"`, tested here) or a Slurm
job on a cluster, with no code change. What one run does is in `sweep_run.py`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .results import ResultsStore, RunRecord
from .sweep_config import RunSpec, SweepConfig
from .sweep_run import expand_seed, execute, execute_trajectory
from .sweep_shared import Trajectory, plan
from .sweep_workers import WorkerPool, worker_evaluator


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
    if executor not in ("local", "submitit"):
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'submitit'")
    store = ResultsStore(results)
    runs = sweep.expand()
    finished = store.finished()
    todo = [r for r in runs if r.run_id(sweep) not in finished]
    check_chat_templates(sweep)
    workdir = _start(sweep, runs, todo, results, workdir, log)
    trajectories = plan(todo, sweep)
    if executor == "local" and jobs > 1 and len(trajectories) > 1:  # one trajectory: one process, all threads
        _prepare_base_models(sweep)  # here, so that no two workers build one world
        # Workers start after the worlds are built: started during a build they slow its two threads more than
        # their start costs (measured: 168 s against 169 s for the toy demo, the build 9 s slower)
        with WorkerPool(jobs, sweep.eval) as pool:
            return _run_parallel(trajectories, sweep, store, workdir, keep_checkpoints, pool, log)
    if executor == "submitit":
        return _run_submitit(todo, sweep, store, workdir, executor_options or {}, keep_checkpoints, log)
    evaluator = LmEvalEvaluator(sweep.eval)
    records = []
    with _progress() as bar:
        task = bar.add_task("", total=len(todo))
        for trajectory in trajectories:
            bar.update(task, description=", ".join(f"{run.name} (seed {run.seed})" for run in trajectory.runs))
            for record in execute_trajectory(trajectory, sweep, workdir, evaluator, keep_checkpoints):
                _done(record, store, records, bar)
                bar.advance(task)
    return records


def _prepare_base_models(sweep: SweepConfig) -> None:
    from .data import resolve_model

    for seed in sweep.seeds:
        resolve_model(expand_seed(sweep.base_model, seed))


def _start(sweep: SweepConfig, runs: list[RunSpec], todo: list[RunSpec], results: str | Path,
           workdir: str | Path | None, log: Callable[[str], None]) -> Path:
    """Say what the sweep will do; returns the folder of its checkpoints (created)."""
    log(f"sweep '{sweep.name}': {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to do")
    folder = Path(workdir or Path(results).with_suffix("")) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
        base = resolve_model(expand_seed(sweep.base_model, seed))
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


def _run_parallel(trajectories: list[Trajectory], sweep: SweepConfig, store: ResultsStore, workdir: Path,
                  keep_checkpoints: bool, pool: WorkerPool, log: Callable[[str], None]) -> list[RunRecord]:
    """The pool's workers run the runs; the parent has built every seed's base model (so no two workers build one
    world) and writes every record."""
    from concurrent.futures import as_completed

    log(f"running {min(pool.jobs, len(trajectories))} runs at a time, {pool.threads} CPU thread(s) each")
    ordered = sorted(trajectories, key=lambda t: (_COST.get(t.trained.method, 1), -len(t.runs)))
    records: list[RunRecord] = []
    with _progress() as bar:
        task = bar.add_task("", total=sum(len(t.runs) for t in trajectories))
        futures = [pool.submit(_worker_run, trajectory, sweep, str(workdir), keep_checkpoints)
                   for trajectory in ordered]
        for future in as_completed(futures):
            for record in future.result():
                bar.update(task, description=f"finished {record.name} (seed {record.seed})")
                _done(record, store, records, bar)
                bar.advance(task)
    return records


def _worker_run(trajectory: Trajectory, sweep: SweepConfig, workdir: str, keep_checkpoint: bool) -> list[RunRecord]:
    """One trajectory's runs in a worker process, with the evaluator the worker built when it started."""
    return execute_trajectory(trajectory, sweep, Path(workdir), worker_evaluator(), keep_checkpoint)


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
