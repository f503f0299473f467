"""The `--device` flag, one meaning for every command that loads a model (diagnose, judge)."""
from __future__ import annotations


def resolve_device(device: str | None, here: bool = True) -> str:
    """`device` as a torch device string ('auto' or None: cuda when available, else cpu). ValueError for
    anything that is not cpu, cuda, cuda:N or mps, and (`here`: the model runs on this machine) for a
    device this machine lacks, before any weight is read."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(str(device))
    except (RuntimeError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N (mps on Apple silicon)")
    if here and parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    if here and parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu or auto")
    return str(parsed)
