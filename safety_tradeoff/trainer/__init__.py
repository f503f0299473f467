"""Safety-preserving fine-tuning on top of TRL's `SFTTrainer`.

- Case I, alignment-loss constraint: [`AlignmentLossSFTTrainer`] / [`AlignmentLossConfig`] (`align_*` fields).
- Case II, alignment-parameter constraint: [`ParamConstraintSFTTrainer`] / [`ParamConstraintConfig`] (`anchor_*`).
- EMA of the weights: [`EMASFTTrainer`] / [`EMAConfig`] (`ema_*`).
- All three: [`SafeSFTTrainer`] / [`SafetySFTConfig`].
- Evaluation during training with the lm-eval tasks: [`LmEvalCallback`].

The trainers rely on private TRL/transformers internals: `trl==1.16.*`, `transformers==5.23.*` (see `base.py`).
Engines, precision, memory options and resume rules: docs/training-engines.md.
"""

from .alignment_loss_config import AlignmentLossConfig
from .alignment_loss_trainer import AlignmentLossMixin, AlignmentLossSFTTrainer
from .anchor import ParameterAnchor
from .base import SafetyTrainerBase
from .checkpoint_state import ANCHOR_NAME, EMA_NAME, STATE_NAME
from .dataset_checks import validate_align_dataset
from .distributed_support import check_distributed_support
from .ema_config import EMAConfig
from .ema_shadow import EMAShadow
from .ema_trainer import EMAMixin, EMASFTTrainer
from .errors import NonFiniteLossError
from .lm_eval_callback import LmEvalCallback
from .lora_delta import lora_merged_sq_norm
from .param_constraint_config import ParamConstraintConfig
from .param_constraint_trainer import ParamConstraintMixin, ParamConstraintSFTTrainer
from .safe_sft_trainer import SafeSFTTrainer
from .safety_sft_config import SafetySFTConfig

__all__ = [
    "ANCHOR_NAME",
    "EMA_NAME",
    "STATE_NAME",
    "AlignmentLossConfig",
    "AlignmentLossMixin",
    "AlignmentLossSFTTrainer",
    "EMAConfig",
    "EMAMixin",
    "EMAShadow",
    "EMASFTTrainer",
    "LmEvalCallback",
    "NonFiniteLossError",
    "ParamConstraintConfig",
    "ParamConstraintMixin",
    "ParamConstraintSFTTrainer",
    "ParameterAnchor",
    "SafeSFTTrainer",
    "SafetySFTConfig",
    "SafetyTrainerBase",
    "check_distributed_support",
    "lora_merged_sq_norm",
    "validate_align_dataset",
]
