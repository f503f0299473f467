"""`safety-tradeoff leaderboard` on real lm-eval output: the toy world's base, aligned and plainly fine-tuned
models evaluated by lm-eval (in process, written by lm-eval's own EvaluationTracker exactly as the `lm_eval`
CLI writes `--output_path`), one of them in two calls on different tasks, judged by a tiny judge, and a
sweep-store record from the project's evaluator. Expected numbers are read back from lm-eval's files.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import statistics
import struct
from pathlib import Path

import pytest
import torch

from safety_tradeoff.cli import main

pytestmark = pytest.mark.slow  # the toy world and lm-eval runs

SAFETY = ["safety_tradeoff_toy_harmful", "safety_tradeoff_toy_over_refusal", "safety_tradeoff_toy_alignment_nll"]
CAPABILITY = ["safety_tradeoff_toy_task", "safety_tradeoff_toy_task_nll"]


def _evaluate(model_dir: Path, tasks: list[str], out: Path, toy_world, log_samples: bool = False) -> None:
    """One `lm_eval` call, saved as the CLI saves it (lm_eval/_cli/run.py: aggregated results, then samples)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from safety_tradeoff import tasks_path

    tracker = EvaluationTracker(output_path=str(out))
    tm = TaskManager(include_path=tasks_path(), include_defaults=False, metadata={"toy_world": str(toy_world.root)})
    results = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32", "device": "cpu"}, tasks=tasks,
        task_manager=tm, apply_chat_template=True, limit=40, batch_size=40, bootstrap_iters=100,
        log_samples=log_samples, evaluation_tracker=tracker)
    samples = results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"] if samples else ():
        tracker.save_results_samples(task_name=task, samples=samples[task])


@pytest.fixture(scope="module")
def runs(toy_world, tmp_path_factory):
    """lm-eval output of three models: aligned (two calls: safety tasks, then capability tasks), a plain SFT
    fine-tune (all tasks) and the base model (safety tasks only), the aligned model's samples judged."""
    from safety_tradeoff.toyworld.marker import carry_marker
    from safety_tradeoff.toyworld.training import sft

    from judge_models import build_classifier_judge

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("leaderboard")
    model, tok = toy_world.load_aligned()
    tuned = sft(copy.deepcopy(model), tok, toy_world.dataset("task_high_overlap"), steps=120, lr=1e-3,
                batch_size=32, seed=0)
    sft_dir = root / "models" / "plain-sft"
    tuned.save_pretrained(sft_dir)
    tok.save_pretrained(sft_dir)
    carry_marker(toy_world.aligned_dir, [sft_dir])
    out = root / "lm_eval_out"
    _evaluate(toy_world.aligned_dir, SAFETY, out, toy_world, log_samples=True)
    _evaluate(toy_world.aligned_dir, CAPABILITY, out, toy_world)
    _evaluate(sft_dir, SAFETY + CAPABILITY, out, toy_world)
    _evaluate(toy_world.base_dir, SAFETY, out, toy_world)
    judge = build_classifier_judge(root / "judge")
    folders = {p.parent.name.rsplit("__", 1)[-1]: p.parent for p in out.rglob("results_2*.json")}
    assert main(["judge", str(folders["aligned"]), "--judge", str(judge), "--device", "cpu"]) == 0
    return out, folders, sft_dir


def _results(folder: Path) -> dict[str, dict]:
    """Every task's metrics in a model folder, read straight from lm-eval's files."""
    merged: dict[str, dict] = {}
    for path in sorted(folder.glob("results_2*.json")):
        merged.update(json.loads(path.read_text())["results"])
    return merged


def _png_ok(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and min(struct.unpack(">II", data[16:24])) > 200


def _row(report, name: str):
    return next(r for r in report.rows if r.name == name)


def test_leaderboard_of_real_lm_eval_runs(runs, tmp_path, capsys):
    from safety_tradeoff.report import leaderboard_columns
    from safety_tradeoff.report.leaderboard import build_leaderboard

    out, folders, _ = runs
    assert len(list(folders["aligned"].glob("results_2*.json"))) == 2  # two calls, one model
    assert main(["leaderboard", str(out), "--reference", "aligned", "--out", str(tmp_path / "board")]) == 0
    assert "report written to" in capsys.readouterr().err
    report = build_leaderboard([out], tmp_path / "again", reference="aligned")
    assert sorted(r.name for r in report.rows) == ["aligned", "base", "plain-sft"]
    assert report.capability_metric == "task_accuracy"  # picked: the capability metric most rows have

    aligned, tuned, base = (_row(report, n) for n in ("aligned", "plain-sft", "base"))
    res = {name: _results(folder) for name, folder in folders.items()}
    harmful = res["aligned"]["safety_tradeoff_toy_harmful"]
    # the two calls merge into one row; every number is lm-eval's, with lm-eval's standard error
    assert aligned.metrics["harmful_rate"].mean == harmful["harmful_rate,none"]
    assert aligned.metrics["harmful_rate"].stderr == pytest.approx(harmful["harmful_rate_stderr,none"])
    assert aligned.metrics["task_accuracy"].mean == res["aligned"]["safety_tradeoff_toy_task"]["exact_match,none"]
    n = res["aligned"]["safety_tradeoff_toy_over_refusal"]
    assert aligned.metrics["over_refusal_rate"].mean == n["over_refusal_rate,none"]
    # the gaps against the reference
    nll = {k: res[k]["safety_tradeoff_toy_alignment_nll"]["alignment_nll,none"] for k in ("aligned", "plain-sft")}
    acc = {k: res[k]["safety_tradeoff_toy_task"]["exact_match,none"] for k in ("aligned", "plain-sft")}
    assert tuned.metrics["safety_gap"].mean == pytest.approx(nll["plain-sft"] - nll["aligned"])
    assert tuned.metrics["capability_gap"].mean == pytest.approx(acc["aligned"] - acc["plain-sft"])
    assert aligned.reference == "aligned" and aligned.metrics["safety_gap"].mean == 0.0
    # the toy world's trade-off is visible: plain SFT learns the task and loses refusals
    assert tuned.metrics["harmful_rate"].mean > aligned.metrics["harmful_rate"].mean + 0.1  # claim (a)'s +10 points: the world build is not bit-reproducible across machines (thread counts), and its damage varies (38-63% here)
    assert tuned.metrics["task_accuracy"].mean > aligned.metrics["task_accuracy"].mean + 0.5
    # the base model ran the safety tasks only: blanks, never dropped
    assert "task_accuracy" not in base.metrics
    md_base = next(line for line in report.markdown.splitlines() if line.startswith("| base |"))
    cols = [c.strip() for c in md_base.strip("|").split("|")]
    header = [c.strip() for c in report.markdown.splitlines()[2].strip("|").split("|")]
    assert cols[header.index("task ↑")] == "–"
    # the judge's verdicts join the aligned model's row
    judged = json.loads((folders["aligned"] / "results_judged.json").read_text())["results"]
    assert aligned.metrics["judge_harmful_rate"].mean == judged["safety_tradeoff_toy_harmful"]["judge_harmful_rate,none"]
    assert "harmful (judge) ↓" in header and "judge_harmful_rate" not in tuned.metrics
    section = report.summary.split("## Keyword vs judge")[1]
    assert f"Judge: {folders['aligned'].parent.parent / 'judge'} (format classifier" in section
    counts = json.loads((folders["aligned"] / "results_judged.json").read_text())["agreement"]
    cells = counts["safety_tradeoff_toy_harmful"]
    assert (f"| aligned | safety_tradeoff_toy_harmful | {sum(cells.values())} | {cells['both_harmful']} | "
            f"{cells['keyword_only']} | {cells['judge_only']} | {cells['both_safe']} | {cells['unparsed']} |") in section
    # stderr as an interval in every format
    se = harmful["harmful_rate_stderr,none"]
    md_aligned = next(line for line in report.markdown.splitlines() if line.startswith("| aligned |"))
    assert f"{100 * harmful['harmful_rate,none']:.1f} ± {100 * se:.1f}%" in md_aligned
    table = {r["name"]: r for r in csv.DictReader((tmp_path / "board" / "leaderboard.csv").open())}
    assert float(table["aligned"]["harmful_rate_stderr"]) == pytest.approx(se)
    assert table["base"]["task_accuracy_mean"] == ""
    html = (tmp_path / "board" / "leaderboard.html").read_text()
    assert 'class="sortable"' in html and "<script>" in html
    # the plot and its Pareto frontier
    assert _png_ok(tmp_path / "board" / "tradeoff.png")
    front = report.summary.split("## Recommendation")[1]
    assert "Pareto frontier" in front and "plain-sft" in front
    assert not any(c.key in ("dist_to_theta0", "train_s") for c in leaderboard_columns(report.rows, report.layout))


def test_a_sweep_store_joins_the_evaluated_models(runs, toy_world, tmp_path):
    """A record from the project's own evaluator (what a sweep stores) beside lm-eval's folders."""
    from safety_tradeoff.evaluation import LmEvalEvaluator
    from safety_tradeoff.report.leaderboard import build_leaderboard
    from safety_tradeoff.results import ResultsStore, RunRecord
    from safety_tradeoff.sweep_config import EvalSpec

    out, _, sft_dir = runs
    metrics = LmEvalEvaluator(EvalSpec(tasks=SAFETY + CAPABILITY, batch_size=40))(str(sft_dir))
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(RunRecord(run_id="sweep-sft", name="plain SFT (sweep)", method="sft", seed=0, metrics=metrics))
    report = build_leaderboard([out, store.path], tmp_path / "board", reference="aligned")
    row = _row(report, "plain SFT (sweep)")
    assert row.metrics["harmful_rate"].mean == metrics["harmful_rate"]
    assert row.metrics["safety_gap"].mean == pytest.approx(
        metrics["alignment_nll"] - _row(report, "aligned").metrics["alignment_nll"].mean)
    assert len(report.rows) == 4


def test_leaderboard_bad_input_is_one_clear_line(runs, tmp_path, capsys):
    out, folders, _ = runs

    def error(*args: str) -> str:
        assert main(["leaderboard", *args, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("safety-tradeoff: error: "), err
        return err

    (tmp_path / "empty").mkdir()
    assert "empty: no results in this folder" in error(str(tmp_path / "empty"))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"accuracy": 0.5, "model": "x"}))
    assert "odd.json: unknown results shape (top-level keys: accuracy, model)" in error(str(odd))
    not_store = tmp_path / "notes.jsonl"
    not_store.write_text('{"hello": 1}\n')
    assert "notes.jsonl:1: not a results record" in error(str(not_store))
    assert "no such file or folder" in error(str(tmp_path / "missing"))
    msg = error(str(out), "--reference", "nobody")
    assert "--reference 'nobody' is not among the rows: aligned, base, plain-sft" in msg
    msg = error(str(folders["aligned"]), str(folders["base"]), "--name", f"{folders['aligned']}=same",
                "--name", f"{folders['base']}=same")
    assert "two models named 'same'" in msg and "--name" in msg
    assert "--name /nope=x: '/nope' is neither an input" in error(str(out), "--name", "/nope=x")
    assert "--name expects WHAT=NAME" in error(str(out), "--name", "oops")


def test_leaderboard_score_follows_the_open_llm_leaderboard_normalisation():
    """Formula check against a hand computation, with numbers where each step matters: a subtask below its
    random baseline (clipped to 0), BBH subtasks with 2 and 5 choices, MuSR's 2/5/3 choices, GPQA's 4 and
    MMLU-Pro's 10, IFEval as the mean of its two strict accuracies."""
    from safety_tradeoff.lm_eval_results import derived

    results = {"leaderboard_mmlu_pro": {"acc,none": 0.28}, "leaderboard_gpqa": {"acc_norm,none": 0.30},
               "leaderboard_math_hard": {"exact_match,none": 0.05},
               "leaderboard_ifeval": {"prompt_level_strict_acc,none": 0.40, "inst_level_strict_acc,none": 0.52},
               "leaderboard_bbh_a": {"acc_norm,none": 0.45}, "leaderboard_bbh_b": {"acc_norm,none": 0.50},
               "leaderboard_musr_murder_mysteries": {"acc_norm,none": 0.56},
               "leaderboard_musr_object_placements": {"acc_norm,none": 0.30},
               "leaderboard_musr_team_allocation": {"acc_norm,none": 0.30}}
    configs = {"leaderboard_bbh_a": {"doc_to_choice": ["Yes", "No"]},
               "leaderboard_bbh_b": {"doc_to_choice": ["(A)", "(B)", "(C)", "(D)", "(E)"]}}
    mmlu = (0.28 - 0.1) / 0.9
    gpqa = (0.30 - 0.25) / 0.75
    bbh = (0.0 + (0.50 - 0.2) / 0.8) / 2  # 0.45 < 1/2: clipped to 0
    musr = ((0.56 - 0.5) / 0.5 + (0.30 - 0.2) / 0.8 + 0.0) / 3  # 0.30 < 1/3: clipped
    ifeval = (0.40 + 0.52) / 2
    out = derived(results, configs)
    assert out["ifeval"] == pytest.approx(ifeval)
    assert out["leaderboard_score"] == pytest.approx(statistics.fmean([mmlu, gpqa, bbh, musr, ifeval, 0.05]))
    del results["leaderboard_musr_team_allocation"]  # a missing subtask: no score rather than a wrong one
    assert "leaderboard_score" not in derived(results, configs)
    assert math.isclose(derived(results, configs)["ifeval"], ifeval)
