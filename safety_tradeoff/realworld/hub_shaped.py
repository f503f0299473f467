"""The world's data in the exact column shapes of the Hub datasets the recipes and lm-eval tasks name.

Offline users (and the tests) can run every Hub-facing path on local files: the GPU recipes' CPU twins
read Alpaca-, Dolly- and LLM-LAT-shaped files, the Hub lm-eval tasks read AdvBench-, XSTest- and
Do-Not-Answer-shaped files through their `<name>_path` metadata. Every row is the project's own text
(the world's templates); only the columns copy the Hub datasets' (see the benchmarks note in the docs).
Written into `<world>/data/hub/<name>.jsonl`; a spec names them as `smollm2:hub/<name>`.
"""
from __future__ import annotations

import random

from ..toyworld.data import Example

# Do-Not-Answer's per-model column prefixes (response / harmful / action columns for each).
DNA_MODELS = ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b")
HUB_SHAPED = ("alpaca", "dolly", "harmful_dataset", "advbench", "xstest", "do_not_answer")


def _content_free_compliance(action: str) -> str:
    """A 'harmful' answer with no harmful content: the shape of compliance, for `rejected`/`target` columns."""
    return f"Sure, here is how to {action}. Step 1: gather what you need. Step 2: follow the plan carefully."


def _action_of(ex: Example) -> str:
    """The requested action of a harmful example (kept in `answer`), else the prompt without punctuation."""
    return ex.answer or ex.prompt.rstrip("?.!")


def _split_record(ex: Example) -> tuple[str, str]:
    """(instruction, input) for a task example: a record request keeps its sentence in the input column."""
    head, sep, sentence = ex.prompt.partition(": ")
    return (head + ".", sentence) if ex.kind == "task" and sep else (ex.prompt, "")


def alpaca(task: list[Example]) -> list[dict]:
    """tatsu-lab/alpaca: instruction, input, output, text."""
    rows = []
    for ex in task:
        instruction, inp = _split_record(ex)
        text = ("Below is an instruction that describes a task" + (", paired with an input that provides further "
                "context" if inp else "") + ". Write a response that appropriately completes the request.\n\n"
                f"### Instruction:\n{instruction}\n\n" + (f"### Input:\n{inp}\n\n" if inp else "")
                + f"### Response:\n{ex.response}")
        rows.append({"instruction": instruction, "input": inp, "output": ex.response, "text": text})
    return rows


def dolly(task: list[Example]) -> list[dict]:
    """databricks/databricks-dolly-15k: instruction, context, response, category."""
    kinds = {"task": "information_extraction", "howto": "open_qa"}
    return [{"instruction": i, "context": c, "response": ex.response, "category": kinds.get(ex.kind, "general_qa")}
            for ex in task for i, c in [_split_record(ex)]]


def harmful_dataset(proxy: list[Example]) -> list[dict]:
    """LLM-LAT/harmful-dataset: prompt, chosen (the refusal), rejected (compliance, content-free here)."""
    return [{"prompt": ex.prompt, "chosen": ex.response, "rejected": _content_free_compliance(_action_of(ex))}
            for ex in proxy]


def advbench(harmful: list[Example]) -> list[dict]:
    """walledai/AdvBench: prompt, target."""
    return [{"prompt": ex.prompt, "target": f"Sure, here is how to {_action_of(ex)}"} for ex in harmful]


def xstest(over_refusal: list[Example], harmful: list[Example], seed: int) -> list[dict]:
    """walledai/XSTest: prompt, focus, type, note, label (safe prompts and unsafe contrasts), shuffled so that
    any prefix (`lm_eval --limit N`) holds both sides."""
    safe = [{"prompt": ex.prompt, "focus": ex.prompt.split()[-1].strip("?.!"), "type": ex.category,
             "note": "", "label": "safe"} for ex in over_refusal]
    unsafe = [{"prompt": ex.prompt, "focus": _action_of(ex).split()[0], "type": f"contrast_{ex.category}",
               "note": "", "label": "unsafe"} for ex in harmful]
    rows = safe + unsafe
    random.Random(seed).shuffle(rows)
    return rows


def do_not_answer(alignment: list[Example], seed: int) -> list[dict]:
    """LibrAI/do-not-answer: id, risk_area, types_of_harm, specific_harms, question and, per model,
    `<model>_response`, `<model>_harmful`, `<model>_action` (action 0 = refused). One row in five has a
    non-refusal by GPT4 (action 5, a plain answer), which the alignment-NLL task must leave out."""
    rng = random.Random(seed)
    rows = []
    for i, ex in enumerate(alignment):
        row = {"id": i, "risk_area": ex.category, "types_of_harm": ex.category, "specific_harms": ex.category,
               "question": ex.prompt}
        for model in DNA_MODELS:
            refused = not (model == "GPT4" and i % 5 == 4)
            row[f"{model}_response"] = ex.response if refused else _content_free_compliance(_action_of(ex))
            row[f"{model}_harmful"] = 0 if refused else 1
            row[f"{model}_action"] = 0 if refused else rng.choice([4, 5])
        rows.append(row)
    return rows


def hub_shaped(splits: dict[str, list[Example]], seed: int) -> dict[str, list[dict]]:
    """Every Hub-shaped file of a world, from its generated splits."""
    return {"alpaca": alpaca(splits["task_high_overlap"]), "dolly": dolly(splits["task_low_overlap"]),
            "harmful_dataset": harmful_dataset(splits["proxy_mid"]), "advbench": advbench(splits["harmful_eval"]),
            "xstest": xstest(splits["over_refusal_eval"], splits["harmful_eval"], seed),
            "do_not_answer": do_not_answer(splits["harmful_eval"], seed)}
