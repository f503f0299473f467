"""Local alignment-loss landscape at the aligned weights θ₀: the quantities of the Case II bound.

Chen et al. (2025), Case II (alignment *parameter* constraint, reconstruction in
``shared/notes/papers.md`` §1): if the alignment loss L_s is β_s-smooth on the ball ‖θ − θ₀‖ ≤ r, then
the safety alignment gap of any θ in the ball obeys

    G_s = L_s(θ) − L_s(θ₀) ≤ ‖∇L_s(θ₀)‖·r + (β_s/2)·r².

:func:`alignment_landscape` estimates the two constants at θ₀ on a sample of safety data (harmful
prompt → refusal), with L_s the **token-weighted** mean response-token NLL (sum of token NLLs / number of
response tokens: the same definition as the lm-eval metric ``alignment_nll``):

* ``grad_norm`` = ‖∇L_s(θ₀)‖, exact on the sample;
* ``top_eigenvalue`` = the eigenvalue of largest magnitude of ∇²L_s(θ₀), from Hessian-vector products
  (double backward) by power iteration (this function's default) or Lanczos (``diagnose``'s default);
  ``beta`` = its absolute value, the spectral norm of the Hessian. The Hessian at θ₀ only lower-bounds the smoothness constant on the whole ball
  (curvature can grow away from θ₀), so ``bound(r)`` is the local (second-order) version of the bound,
  trustworthy for small r.

Both estimators approach |λ|max from below (a Rayleigh quotient or Ritz value never exceeds it in
magnitude), so an unconverged run *under*-states β. Power iteration converges like (|λ₂|/|λ₁|)^k and can
be slow when the top of the spectrum is crowded, as on randomly initialised models; its stopping rule
(relative change between steps < tol) can then fire while the estimate is still creeping up. Lanczos
(``method="lanczos"``) reaches the extreme eigenvalue in far fewer HVPs and stops on the Ritz residual
bound, at the price of storing one parameter-sized vector per step.

Batching does not change the numbers: each batch contributes its *sum* of token NLLs divided by the token
count of the whole sample, so gradients and HVPs add up to those of the token-weighted mean. Only one
batch's double-backward graph is alive at a time.

Cost: every power-iteration step is one forward + backward + double backward over the whole sample
(roughly 4-5 forward passes); the gradient comes free with the first step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
PARAM_MODES = ("all", "lora")
METHODS = ("power", "lanczos")
# Attention projections LoRA targets by default, in order of preference (Llama/Mistral/Qwen, BERT-like,
# GPT-2, GPT-NeoX/Falcon, MPT/Phi). Only the names present in the model are used.
_ATTENTION_TARGETS = (("q_proj", "v_proj"), ("query", "value"), ("c_attn",), ("query_key_value",), ("Wqkv",))

Tensors = list[torch.Tensor]
Batch = Mapping[str, torch.Tensor]


@dataclass
class Landscape:
    """Loss, gradient norm and Hessian spectral norm of the alignment loss at θ₀ (see module docstring)."""

    loss: float  # L_s(θ₀), token-weighted mean NLL on the sample
    grad_norm: float  # ‖∇L_s(θ₀)‖ (L2 over the chosen parameters)
    top_eigenvalue: float  # eigenvalue of largest magnitude of ∇²L_s(θ₀) (signed)
    beta: float  # |top_eigenvalue|: the smoothness constant used in the bound
    iterations: int  # HVP power-iteration steps run
    converged: bool  # power: relative change of the estimate < tol; lanczos: Ritz residual < tol·|estimate|
    n_examples: int
    n_tokens: int
    n_params: int
    params: str  # "all" or "lora"
    seconds: float
    method: str = "power"  # "power" or "lanczos"

    def bound(self, r: float) -> float:
        """Case II bound on the safety gap within radius r: ‖∇L_s(θ₀)‖·r + (β_s/2)·r²."""
        from .bound import case2_bound

        return case2_bound(self.grad_norm, self.beta, r)


def alignment_landscape(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    iterations: int = 20,
    tol: float = 1e-3,
    params: str = "all",
    lora_config=None,
    seed: int = 0,
    method: str = "power",
    progress: Callable[[str], None] | None = None,
) -> Landscape:
    """Estimate L_s(θ₀), ‖∇L_s(θ₀)‖ and the largest-magnitude Hessian eigenvalue of L_s at θ₀.

    ``batches``: dicts with ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on prompt and
    padding tokens), already on the model's device. They are materialised as a list because every
    power-iteration step re-reads the whole sample.

    ``params="all"``: derivatives w.r.t. every parameter with ``requires_grad`` (for small models: the
    Hessian-vector products need about three parameter-sized buffers on top of the model and graph).

    ``params="lora"`` (for large models): the model is wrapped in place with a peft LoRA adapter
    (``lora_config``, default r=8, alpha=16, no dropout, on the attention projections present, e.g.
    ``q_proj``/``v_proj``), derivatives are taken w.r.t. the LoRA parameters only, at the LoRA point
    B = 0 (so the model computes exactly θ₀), and the adapter is unloaded afterwards: the caller's model
    gets back its original modules, parameters and ``requires_grad`` flags. The LoRA A matrices are drawn
    from ``seed`` (the caller's global RNG state is left untouched). What the numbers then mean: the
    loss is L_s(θ₀); the gradient is that of L_s along the LoRA parametrisation, i.e. only its B part is
    non-zero (∂L/∂B = s·∇_W L·Aᵀ, ∂L/∂A = s·Bᵀ∇_W L = 0 at B = 0, with s = alpha/r); the Hessian is the
    curvature of θ(A, B) ↦ L_s, which mixes the full-weight Hessian projected onto the LoRA directions
    with A-B cross terms made of ∇_W L. It depends on A's draw, r and alpha, and is *not* the spectral
    norm of the full-weight Hessian; it is the β relevant to a LoRA fine-tune constrained in the LoRA
    parameters' norm.

    ``method``: ``"power"`` (power iteration from a seeded random unit vector, Rayleigh-quotient estimate,
    stop when its relative change is < ``tol``) or ``"lanczos"`` (Lanczos with full reorthogonalisation
    from the same start; estimate = largest-magnitude Ritz value, stop when its residual bound is
    < ``tol`` times it; keeps ``iterations`` parameter-sized vectors). ``iterations`` caps the number of
    Hessian-vector products either way.

    The computation runs in eval mode (no dropout) with SDPA forced to its math kernel (the fused
    kernels have no double backward); training flags are restored afterwards, no ``.grad`` is left on
    the parameters and the weights are not modified. Everything runs in the model's dtype on its
    device; the gradient, the HVP accumulators and the dot products are kept in at least float32
    (float64 for dot products).

    Raises ValueError for: ``iterations < 1``, an unknown ``params`` or ``method``, no batches or no label
    tokens, a model with no trainable parameters, a non-finite loss or gradient at θ₀, an unusable LoRA
    config.
    """
    start = time.perf_counter()
    _validate_args(iterations, tol, params, method)
    batch_list = _as_batch_list(batches)
    n_examples, n_tokens = _count(batch_list)
    with _lora_adapter(model, lora_config, seed, enabled=params == "lora"), _eval_mode(model), _math_sdpa():
        chosen = _chosen_params(model, params)
        solver = _power_iteration if method == "power" else _lanczos
        result = solver(model, batch_list, chosen, n_tokens, iterations, tol, seed, progress)
    loss, grad_norm, eigenvalue, steps, converged = result
    return Landscape(
        loss=loss,
        grad_norm=grad_norm,
        top_eigenvalue=eigenvalue,
        beta=abs(eigenvalue),
        iterations=steps,
        converged=converged,
        n_examples=n_examples,
        n_tokens=n_tokens,
        n_params=sum(p.numel() for p in chosen),
        params=params,
        seconds=time.perf_counter() - start,
        method=method,
    )


# --------------------------------------------------------------------------------------------- inputs


def _validate_args(iterations: int, tol: float, params: str, method: str) -> None:
    if params not in PARAM_MODES:
        raise ValueError(f"params must be one of {PARAM_MODES}, got {params!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")


def _as_batch_list(batches: Iterable[Batch]) -> list[Batch]:
    """A list, because each HVP step iterates the sample again (a generator would be exhausted)."""
    batch_list = list(batches)
    if not batch_list:
        raise ValueError("batches is empty: no examples to compute the alignment loss on")
    for i, batch in enumerate(batch_list):
        missing = {"input_ids", "labels"} - set(batch)
        if missing:
            raise ValueError(f"batch {i} lacks {sorted(missing)} (needs input_ids, attention_mask, labels)")
    return batch_list


def _count(batch_list: list[Batch]) -> tuple[int, int]:
    """(examples, label tokens), counting labels after the causal shift, as the loss sees them."""
    n_examples = sum(int(b["input_ids"].shape[0]) for b in batch_list)
    n_tokens = sum(int((b["labels"][..., 1:] != IGNORE_INDEX).sum()) for b in batch_list)
    if n_tokens == 0:
        raise ValueError(
            "no label tokens in the batches: every label is -100 (after the causal shift), so the alignment "
            "loss is undefined; check that the tokenizer/chat template leaves the response tokens unmasked"
        )
    return n_examples, n_tokens


def _chosen_params(model: nn.Module, params: str) -> Tensors:
    if params == "lora":
        chosen = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    else:
        chosen = [p for p in model.parameters() if p.requires_grad]
    if not chosen:
        raise ValueError(f"the model has no trainable parameters (params={params!r}): nothing to differentiate")
    return chosen


# ------------------------------------------------------------------------------------ model context


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout: the loss must be a deterministic function of θ), per-module flags restored."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in flags.items():
            module.training = training


@contextmanager
def _math_sdpa() -> Iterator[None]:
    """Force SDPA's math kernel: the flash/efficient kernels (CPU and CUDA) have no double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


@contextmanager
def _lora_adapter(model: nn.Module, lora_config, seed: int, *, enabled: bool) -> Iterator[None]:
    """Inject a B = 0 LoRA adapter into ``model`` in place, and unload it (restoring flags) on exit."""
    if not enabled:
        yield
        return
    from peft.tuners.lora import LoraModel

    config = _lora_config(model, lora_config)
    requires_grad = {p: p.requires_grad for p in model.parameters()}
    with _isolated_rng(model, seed):
        tuner = LoraModel(model, config, "default")
    try:
        _check_lora_at_zero(model)
        yield
    finally:
        tuner.unload()
        for p, flag in requires_grad.items():
            p.requires_grad_(flag)


def _lora_config(model: nn.Module, lora_config):
    """A private copy of the user's LoRA config (peft mutates it), or the default on attention projections."""
    from peft import LoraConfig

    if getattr(model, "peft_config", None) is not None:
        raise ValueError(
            "params='lora' needs a plain model, but this one already carries a peft adapter: unload/merge it "
            "first, or use params='all' to differentiate w.r.t. its trainable (adapter) parameters"
        )
    if lora_config is None:
        return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=_default_targets(model))
    if not isinstance(lora_config, LoraConfig):
        raise ValueError(f"lora_config must be a peft.LoraConfig, got {type(lora_config).__name__}")
    if lora_config.init_lora_weights not in (True, "gaussian"):
        raise ValueError(
            f"lora_config.init_lora_weights={lora_config.init_lora_weights!r}: only True or 'gaussian' start "
            "from B = 0 without touching the base weights, which the landscape at θ₀ requires"
        )
    if lora_config.modules_to_save or getattr(lora_config, "layer_replication", None):
        raise ValueError("lora_config with modules_to_save or layer_replication is not supported (changes the model)")
    return copy.deepcopy(lora_config)


def _default_targets(model: nn.Module) -> list[str]:
    """The first family of attention-projection names present among the model's Linear layers."""
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for family in _ATTENTION_TARGETS:
        present = [t for t in family if t in names]
        if present:
            return present
    raise ValueError(
        "params='lora': no known attention projection (q_proj/v_proj, query/value, c_attn, ...) found; "
        "pass lora_config=LoraConfig(target_modules=[...])"
    )


@contextmanager
def _isolated_rng(model: nn.Module, seed: int) -> Iterator[None]:
    """Seed peft's LoRA-A initialisation without disturbing the caller's global RNG streams."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _check_lora_at_zero(model: nn.Module) -> None:
    """The landscape is meant at θ₀, which for LoRA means every B matrix is zero."""
    for name, p in model.named_parameters():
        if "lora_B" in name and bool(p.detach().ne(0).any()):
            raise ValueError(f"LoRA parameter {name} is not zero after initialisation: the model would not be at θ₀")


# -------------------------------------------------------------------------------- loss and HVP


def _batch_nll_sum(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Sum of the shifted response-token NLLs of one batch (HF causal-LM loss with reduction='sum')."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), use_cache=False
    ).logits
    logits = logits[:, :-1, :]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    labels = batch["labels"][:, 1:].to(logits.device)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def _acc_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.promote_types(p.dtype, torch.float32)


def _zeros_like(params: Tensors) -> Tensors:
    return [torch.zeros(p.shape, dtype=_acc_dtype(p), device=p.device) for p in params]


def _dot(xs: Tensors, ys: Tensors) -> float:
    """<x, y> over a parameter list, summed in float64."""
    return float(sum(torch.sum(x * y, dtype=torch.float64).item() for x, y in zip(xs, ys)))


def _random_unit(params: Tensors, seed: int) -> Tensors:
    """Seeded Gaussian direction, drawn on the CPU (same start on every device), normalised."""
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.device, _acc_dtype(p)) for p in params]
    return torch._foreach_div(v, math.sqrt(_dot(v, v)))


def _hvp_pass(model: nn.Module, batch_list: list[Batch], params: Tensors, n_tokens: int, v: Tensors,
              with_grad: bool) -> tuple[Tensors, float, Tensors | None]:
    """H·v over the whole sample (and, if asked, the loss and gradient), one batch graph at a time."""
    hv = _zeros_like(params)
    grad = _zeros_like(params) if with_grad else None
    loss_total = 0.0
    v_model = [x.to(p.dtype) for x, p in zip(v, params)]
    for batch in batch_list:
        loss = _batch_nll_sum(model, batch) / n_tokens
        g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        g = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params)]
        loss_total += float(loss.detach())
        if grad is not None:
            torch._foreach_add_(grad, [gi.detach().to(a.dtype) for gi, a in zip(g, grad)])
        _accumulate_hvp(hv, g, params, v_model)
    return hv, loss_total, grad


def _accumulate_hvp(hv: Tensors, g: Tensors, params: Tensors, v_model: Tensors) -> None:
    """hv += ∂(g·v)/∂θ for one batch (double backward); parameters the gradient doesn't depend on add 0."""
    live = [i for i, gi in enumerate(g) if gi.requires_grad]
    if not live:
        return
    out = torch.autograd.grad([g[i] for i in live], params, [v_model[i] for i in live], allow_unused=True)
    pairs = [(a, h) for a, h in zip(hv, out) if h is not None]
    if pairs:
        torch._foreach_add_([a for a, _ in pairs], [h.to(a.dtype) for a, h in pairs])


def _check_finite(loss: float, grad: Tensors) -> float:
    """Raise for a non-finite loss/gradient at θ₀ (overflow, a broken checkpoint); return ‖grad‖."""
    if not math.isfinite(loss):
        raise ValueError(f"the alignment loss at θ₀ is not finite ({loss}): check the weights, dtype and labels")
    grad_norm = math.sqrt(_dot(grad, grad))
    if not math.isfinite(grad_norm):
        raise ValueError(f"the gradient of the alignment loss at θ₀ is not finite (norm {grad_norm})")
    return grad_norm


def _power_iteration(model: nn.Module, batch_list: list[Batch], params: Tensors, n_tokens: int, iterations: int,
                     tol: float, seed: int, progress: Callable[[str], None] | None
                     ) -> tuple[float, float, float, int, bool]:
    """Power iteration on H with Rayleigh-quotient estimates: converges to the largest-|λ| eigenvalue.

    Returns (loss, grad_norm, eigenvalue, steps, converged); the loss and gradient come from step 1.
    """
    v = _random_unit(params, seed)
    estimate, loss, grad_norm, converged, step = math.nan, math.nan, math.nan, False, 0
    for step in range(1, iterations + 1):
        hv, step_loss, grad = _hvp_pass(model, batch_list, params, n_tokens, v, with_grad=step == 1)
        if grad is not None:
            loss, grad_norm = step_loss, _check_finite(step_loss, grad)
            del grad
        previous, estimate = estimate, _dot(v, hv)  # v is a unit vector
        hv_norm = math.sqrt(_dot(hv, hv))
        if progress is not None:
            progress(f"landscape: step {step}/{iterations} eigenvalue {estimate:.6g}")
        if not math.isfinite(hv_norm):
            raise ValueError(f"Hessian-vector product is not finite at step {step} (norm {hv_norm})")
        if hv_norm == 0.0:  # v in the null space: H v = 0, the Rayleigh quotient is exact (0)
            converged = True
            break
        if abs(estimate - previous) <= tol * abs(estimate):  # False while previous is NaN
            converged = True
            break
        v = torch._foreach_div(hv, hv_norm)
    return loss, grad_norm, estimate, step, converged


def _lanczos(model: nn.Module, batch_list: list[Batch], params: Tensors, n_tokens: int, iterations: int,
             tol: float, seed: int, progress: Callable[[str], None] | None) -> tuple[float, float, float, int, bool]:
    """Lanczos with full reorthogonalisation; estimate = the Ritz value of largest magnitude.

    Its error is bounded by the residual β_k·|s_k| (s = that Ritz vector of the tridiagonal T_k), which is
    the stopping rule; β_k ≈ 0 means the Krylov space is invariant and the Ritz values are exact.
    Returns (loss, grad_norm, eigenvalue, steps, converged) like :func:`_power_iteration`.
    """
    basis = [_random_unit(params, seed)]
    alphas: list[float] = []
    betas: list[float] = []
    loss, grad_norm, estimate, converged, step = math.nan, math.nan, math.nan, False, 0
    for step in range(1, iterations + 1):
        w, step_loss, grad = _hvp_pass(model, batch_list, params, n_tokens, basis[-1], with_grad=step == 1)
        if grad is not None:
            loss, grad_norm = step_loss, _check_finite(step_loss, grad)
            del grad
        alphas.append(_dot(basis[-1], w))
        for q in basis:  # full reorthogonalisation (covers the three-term recurrence as well)
            torch._foreach_add_(w, q, alpha=-_dot(q, w))
        betas.append(math.sqrt(_dot(w, w)))
        if not math.isfinite(betas[-1]):
            raise ValueError(f"Hessian-vector product is not finite at step {step}")
        estimate, residual = _top_ritz(alphas, betas)
        if progress is not None:
            progress(f"landscape: lanczos step {step}/{iterations} eigenvalue {estimate:.6g} residual {residual:.3g}")
        if residual <= tol * abs(estimate) or betas[-1] <= 1e-12 * max(abs(a) for a in alphas) or betas[-1] == 0:
            converged = True
            break
        basis.append(torch._foreach_div(w, betas[-1]))
    return loss, grad_norm, estimate, step, converged


def _top_ritz(alphas: list[float], betas: list[float]) -> tuple[float, float]:
    """(largest-magnitude eigenvalue of the Lanczos tridiagonal, its residual bound β_k·|last component|)."""
    k = len(alphas)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[: k - 1], dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(t)
    top = int(values.abs().argmax())
    return float(values[top]), betas[-1] * abs(float(vectors[-1, top]))
