"""The config dataclasses parse with TrlParser/HfArgumentParser (YAML and command line) and document every field."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import HfArgumentParser
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from safety_tradeoff.trainer import AlignmentLossConfig, EMAConfig, ParamConstraintConfig, SafetySFTConfig

GROUPS = {
    AlignmentLossConfig: {"align_lambda", "align_mode", "align_epsilon", "align_dual_lr", "align_lambda_max",
                          "align_batch_size", "align_forward"},
    ParamConstraintConfig: {"anchor_lambda", "anchor_radius", "anchor_mode", "lora_delta", "anchor_dtype",
                            "anchor_offload"},
    EMAConfig: {"ema_beta", "ema_dtype", "ema_eval", "ema_save", "ema_log_distances", "ema_offload",
                "ema_update_every"},
}
SFT_FIELDS = {f.name for f in dataclasses.fields(SFTConfig)}


def own_fields(cls):
    return {f.name: f for f in dataclasses.fields(cls) if f.name not in SFT_FIELDS}


@pytest.mark.parametrize("cls", [*GROUPS, SafetySFTConfig], ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    expected = set().union(*GROUPS.values()) if cls is SafetySFTConfig else GROUPS[cls]
    fields = own_fields(cls)
    assert set(fields) == expected
    for name, field in fields.items():
        assert field.metadata.get("help"), name
        assert f"\n        {name} (`" in cls.__doc__, f"{name} missing from the {cls.__name__} docstring"


def test_trl_parser_reads_yaml_and_command_line(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text(
        "model_name_or_path: some/model\n"
        "dataset_name: some/dataset\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "use_cpu: true\n"
        "assistant_only_loss: true\n"
        "align_mode: constraint\n"
        "align_epsilon: 0.5\n"
        "align_batch_size: 2\n"
        "anchor_lambda: 0.1\n"
        "anchor_radius: 5.0\n"
        "anchor_mode: loss\n"
        "ema_beta: 0.99\n"
        "ema_save: both\n"
    )
    parser = TrlParser((ScriptArguments, SafetySFTConfig, ModelConfig))
    script_args, args, model_args = parser.parse_args_and_config(
        ["--config", str(config), "--align_lambda", "2.0", "--lora_delta", "params", "--align_lambda_max", "10"]
    )
    assert isinstance(args, SafetySFTConfig) and args.assistant_only_loss
    assert script_args.dataset_name == "some/dataset" and model_args.model_name_or_path == "some/model"
    assert (args.align_mode, args.align_epsilon, args.align_batch_size) == ("constraint", 0.5, 2)
    assert args.align_lambda == 2.0
    assert args.align_lambda_max == 10.0
    assert (args.anchor_lambda, args.anchor_radius, args.anchor_mode, args.lora_delta) == (0.1, 5.0, "loss", "params")
    assert (args.ema_beta, args.ema_save, args.ema_eval) == (0.99, "both", "ema")

    config.write_text(config.read_text() + "anchor_radius: -1.0\n")
    with pytest.raises(ValueError, match="anchor_radius"):
        parser.parse_args_and_config(["--config", str(config)])


@pytest.mark.parametrize(
    "cls, argv, expected",
    [
        (AlignmentLossConfig, ["--align_mode", "constraint", "--align_epsilon", "0.2", "--align_forward", "concat"],
         dict(align_mode="constraint", align_epsilon=0.2, align_forward="concat")),
        (ParamConstraintConfig, ["--anchor_lambda", "0.5", "--anchor_dtype", "bfloat16"],
         dict(anchor_lambda=0.5, anchor_dtype="bfloat16", anchor_radius=None)),
        (EMAConfig, ["--ema_beta", "0.9", "--ema_log_distances", "true"], dict(ema_beta=0.9, ema_log_distances=True)),
    ],
)
def test_group_configs_parse_from_the_command_line(tmp_path, cls, argv, expected):
    (args,) = HfArgumentParser(cls).parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--use_cpu", *argv])
    for key, value in expected.items():
        assert getattr(args, key) == value


def test_choices_are_enforced_by_the_parser(tmp_path):
    with pytest.raises(SystemExit):
        HfArgumentParser(ParamConstraintConfig).parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), "--anchor_mode", "both"]
        )


def test_defaults_turn_every_mechanism_off(tmp_path):
    args = SafetySFTConfig(output_dir=str(tmp_path), use_cpu=True)
    assert args.anchor_lambda == 0.0 and args.anchor_radius is None and args.ema_beta is None
    assert args.align_mode == "penalty"  # Case I is on only when the trainer gets an align_dataset
