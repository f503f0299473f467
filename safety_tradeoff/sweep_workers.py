"""The local sweep's worker processes: `jobs` spawned processes, each with its share of the CPU threads.

On a CPU, two one-thread runs finish more work per minute than one two-thread run (`bench/bench_parallel_runs.py`).
Where the platform has it, the workers are forked from a fork server that imports torch, transformers, TRL and
lm-eval once (about 5 s on the toy world's machine); the command line starts it first thing
(:func:`start_early`), so those imports run beside its own on the other core, before a world build's two
training threads need both cores (workers started during that training slow it more than their start costs:
measured, the toy demo 168 s against 169 s, the build 9 s slower). Elsewhere they are spawned and import on start.
Each worker then indexes the lm-eval tasks, and `gc.freeze()` moves everything imported out of the collector's way
(every full collection would otherwise walk the libraries' objects again, a few tenths of a second per run).

Nothing here knows what a run is: the sweep submits its own top-level function (`sweep._worker_run`), which takes
the evaluator from :func:`worker_evaluator`.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

_EVALUATOR: dict[str, Any] = {}
# What a worker imports, loaded once by the fork server (`multiprocessing.forkserver`)
_PRELOAD = ["torch", "transformers", "trl", "lm_eval", "lm_eval.models.huggingface", "safety_tradeoff.trainer",
            "safety_tradeoff.evaluation", "safety_tradeoff.sweep"]


def threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _context() -> Any:
    """The fork server where the platform has one (Linux, macOS), else spawned processes (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)  # no effect once the server runs
    return context


def start_early(jobs: int) -> None:
    """Start the fork server the workers of `jobs` > 1 runs at a time will come from, with their environment, now
    (it returns at once; the server imports in the background). A no-op without a fork server or with one job."""
    if jobs < 2 or "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    _context()
    with _worker_environment(threads_per_worker(jobs)):
        forkserver.ensure_running()


class WorkerPool:
    """`jobs` worker processes, started when the pool is entered; on leaving with an error (Ctrl-C, a dead worker)
    the runs in progress are stopped (only they are lost), on a normal exit the pool waits for its workers."""

    def __init__(self, jobs: int, eval_spec: Any):
        self.jobs = jobs
        self.threads = threads_per_worker(jobs)
        self.eval_spec = eval_spec
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        with _worker_environment(self.threads):  # a worker (or the fork server) reads the environment when it starts
            environ = dict(os.environ)  # a fork server started earlier has an older one: the workers take this
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=_context(), initializer=_worker_init,
                                             initargs=(self.threads, self.eval_spec, environ))
            for _ in range(self.jobs):
                self._pool.submit(os.getpid)
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:  # every run is recorded: the workers exit (torch's teardown) while the caller goes on
            self._pool.shutdown(wait=False)
            return
        for process in list((getattr(self._pool, "_processes", None) or {}).values()):
            process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)


def worker_evaluator() -> Any:
    """The lm-eval evaluator this worker built when it started; the error building it raised (unknown task names),
    raised again here, in the first run's future, where the sweep sees it."""
    if "error" in _EVALUATOR:
        raise _EVALUATOR["error"]
    return _EVALUATOR["evaluator"]


@contextlib.contextmanager
def _worker_environment(threads: int) -> Iterator[None]:
    """The environment the workers start with: set before they import torch or tqdm, which read it once.
    No progress bars in workers (two workers' training bars would interleave; the sweep's bar stays)."""
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


def _worker_init(threads: int, eval_spec: Any, environ: dict[str, str]) -> None:
    import gc

    os.environ.clear()
    os.environ.update(environ)

    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    from .evaluation import LmEvalEvaluator
    from .trainer import SafeSFTTrainer  # noqa: F401 - before the first run (the fork server has imported it)

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()  # also where the fork server was not started with the workers' environment
    try:
        _EVALUATOR["evaluator"] = LmEvalEvaluator(eval_spec)
    except Exception as err:  # noqa: BLE001 - an initializer's error would only break the pool, without its message
        _EVALUATOR["error"] = err
    gc.freeze()
