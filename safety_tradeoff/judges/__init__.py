"""Judge scoring: rescore saved lm-eval generations with a judge model, beside the keyword rate.

* :mod:`.formats`: the Llama Guard 3 and HarmBench classifier prompt templates (verbatim) and parsing;
* :mod:`.guard`: the injection guard (chat-control markers in model output cannot open a turn);
* :mod:`.adapters`: :func:`load_judge`, :class:`CausalJudge`, :class:`ClassifierJudge`, the size check;
* :mod:`.samples`: reading lm-eval's ``samples_<task>_<timestamp>.jsonl``;
* :mod:`.run`: :func:`judge_samples` (``safety-tradeoff judge``) and :func:`judge_metrics` (sweeps);
* :mod:`.agreement`: the keyword-vs-judge 2×2 table, agreement, Cohen's κ, the report section.

Nothing here imports torch or transformers at import time.
"""
from .adapters import CausalJudge, ClassifierJudge, JudgeError, Verdict, check_judge_reachable, load_judge
from .formats import FORMAT_NAMES, FORMATS, build_harmbench, build_llama_guard
from .run import judge_metrics, judge_samples
from .samples import HARMFUL_TASKS, SamplesError

__all__ = ["CausalJudge", "ClassifierJudge", "FORMATS", "FORMAT_NAMES", "HARMFUL_TASKS", "JudgeError", "SamplesError",
           "Verdict", "build_harmbench", "build_llama_guard", "check_judge_reachable", "judge_metrics", "judge_samples",
           "load_judge"]
