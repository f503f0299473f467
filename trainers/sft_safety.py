# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Safety-preserving supervised fine-tuning: TRL's `sft.py` with Case I, Case II and the weight EMA.

```bash
# toy world, CPU, one process (recipes in trainers/recipes/)
accelerate launch --cpu --num_processes 1 trainers/sft_safety.py --config trainers/recipes/toy_case1_near.yaml

# a real model on GPUs
accelerate launch trainers/sft_safety.py --config trainers/recipes/llama32_1b_dolly_case1.yaml

# anything from the command line (every SafetySFTConfig / SFTConfig / ModelConfig field is an option)
python trainers/sft_safety.py --model_name_or_path toyworld:aligned --dataset_name toyworld:task_high_overlap \
    --align_dataset_name toyworld:proxy_near --align_lambda 0.1 --max_steps 150 --output_dir outputs/case1
```

Datasets and models are named as in `safety_tradeoff.data`: a Hub id, a local file or folder, or
`toyworld:<split>` / `toyworld:aligned` (the offline toy world, built on first use). Which mechanisms
run is decided by the config: Case I when `align_dataset_name` is set, Case II when `anchor_lambda > 0`
or `anchor_radius` is set, the EMA when `ema_beta` is set; with none of them this is plain SFT.
After a pip install, the script is at `$(safety-tradeoff trainers-path)/sft_safety.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SafetyScriptArguments:
    """Datasets of a safety-preserving fine-tuning run.

    Parameters:
        dataset_name: Task data: Hub id, local file/folder, or `toyworld:<split>`.
        dataset_config: Hub config name of the task data.
        dataset_train_split: Split of the task data to train on.
        dataset_test_split: Split used for evaluation when `eval_strategy` is not "no".
        align_dataset_name: Proxy safety data for Case I (harmful prompt -> refusal), same naming; unset = no Case I.
        align_dataset_config: Hub config name of the proxy safety data.
        align_dataset_split: Split of the proxy safety data.
        prompt_column, completion_column, context_column: Raw task data (e.g. Alpaca's instruction/output/input)
            is converted to conversational prompt-completion when these are set.
        align_prompt_column, align_completion_column: The same for the proxy safety data.
        lm_eval_tasks: lm-eval tasks to run on the live (and EMA) model during training, e.g.
            `safety_tradeoff_toy_harmful` (see `LmEvalCallback`); unset = none.
        lm_eval_every_n_steps: How often to run them (optimizer steps); unset = at the end only.
        lm_eval_limit: Documents per task during training.
    """

    dataset_name: str = field(metadata={"help": "Task data: Hub id, local file/folder, or toyworld:<split>."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub config name of the task data."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split of the task data to train on."})
    dataset_test_split: str = field(default="test", metadata={"help": "Evaluation split (eval_strategy != no)."})
    align_dataset_name: str | None = field(
        default=None, metadata={"help": "Proxy safety data for Case I (Hub id, file, toyworld:<split>)."})
    align_dataset_config: str | None = field(default=None, metadata={"help": "Hub config of the proxy data."})
    align_dataset_split: str = field(default="train", metadata={"help": "Split of the proxy safety data."})
    prompt_column: str | None = field(default=None, metadata={"help": "Raw task data: instruction column."})
    completion_column: str | None = field(default=None, metadata={"help": "Raw task data: response column."})
    context_column: str | None = field(default=None, metadata={"help": "Raw task data: optional input column."})
    align_prompt_column: str | None = field(default=None, metadata={"help": "Raw proxy data: prompt column."})
    align_completion_column: str | None = field(default=None, metadata={"help": "Raw proxy data: refusal column."})
    lm_eval_tasks: list[str] | None = field(default=None, metadata={"help": "lm-eval tasks run during training."})
    lm_eval_every_n_steps: int | None = field(default=None, metadata={"help": "Run them every N steps."})
    lm_eval_limit: int | None = field(default=None, metadata={"help": "Documents per task during training."})


def main(script_args: SafetyScriptArguments, training_args, model_args) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import get_peft_config

    from safety_tradeoff.data import load_dataset_spec, resolve_model, to_prompt_completion
    from safety_tradeoff.toyworld.marker import carry_marker, world_dir_of
    from safety_tradeoff.trainer import LmEvalCallback, SafeSFTTrainer

    model_path = resolve_model(model_args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, revision=model_args.model_revision, dtype=model_args.dtype,
        attn_implementation=model_args.attn_implementation, trust_remote_code=training_args.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=training_args.trust_remote_code)
    a = script_args

    def task(split: str):
        data = load_dataset_spec(a.dataset_name, a.dataset_config, split)
        if a.prompt_column:
            data = to_prompt_completion(data, a.prompt_column, a.completion_column, a.context_column)
        return data

    train = task(a.dataset_train_split)
    evaluation = task(a.dataset_test_split) if training_args.eval_strategy != "no" else None
    align = None
    if a.align_dataset_name:
        align = load_dataset_spec(a.align_dataset_name, a.align_dataset_config, a.align_dataset_split)
        if a.align_prompt_column:
            align = to_prompt_completion(align, a.align_prompt_column, a.align_completion_column)
    trainer = SafeSFTTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=evaluation,
                             align_dataset=align, processing_class=tokenizer, peft_config=get_peft_config(model_args))
    if a.lm_eval_tasks:
        marker_world = world_dir_of(model_path)
        trainer.add_callback(LmEvalCallback(
            trainer, tasks=a.lm_eval_tasks, every_n_steps=a.lm_eval_every_n_steps, limit=a.lm_eval_limit,
            metadata={"toy_world": str(marker_world)} if marker_world else None))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        out = Path(training_args.output_dir)
        carry_marker(model_path, [out, out / "live"])
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    trainer.end()


def make_parser():
    from trl import ModelConfig, TrlParser

    from safety_tradeoff.trainer import SafetySFTConfig

    return TrlParser((SafetyScriptArguments, SafetySFTConfig, ModelConfig))


if __name__ == "__main__":
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    main(script_args, training_args, model_args)
