"""The local sweep's worker processes: `jobs` spawned processes, each with its share of the CPU threads.

On a CPU, two one-thread runs finish more work per minute than one two-thread run (`bench/bench_parallel_runs.py`).
A worker pays its start once, when the pool is entered: it imports torch, transformers, TRL and lm-eval (about 5 s
on the toy world's machine) and indexes the lm-eval tasks; then `gc.freeze()` moves everything imported out of the
collector's way (every full collection would otherwise walk the libraries' objects again, a few tenths of a second
per run).

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


class WorkerPool:
    """`jobs` worker processes, started when the pool is entered; on leaving with an error (Ctrl-C, a dead worker)
    the runs in progress are stopped (only they are lost), on a normal exit the pool waits for its workers."""

    def __init__(self, jobs: int, eval_spec: Any):
        self.jobs = jobs
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.eval_spec = eval_spec
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_worker_init, initargs=(self.threads, self.eval_spec))
        with _worker_environment(self.threads):  # each submit starts a worker, which reads the environment once
            for _ in range(self.jobs):
                self._pool.submit(os.getpid)
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._pool.shutdown()
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


def _worker_init(threads: int, eval_spec: Any) -> None:
    import gc

    import torch
    from transformers.utils import logging as hf_logging

    from .evaluation import LmEvalEvaluator
    from .trainer import SafeSFTTrainer  # noqa: F401 - imported now, while the parent builds the worlds

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    try:
        _EVALUATOR["evaluator"] = LmEvalEvaluator(eval_spec)
    except Exception as err:  # noqa: BLE001 - an initializer's error would only break the pool, without its message
        _EVALUATOR["error"] = err
    gc.freeze()
