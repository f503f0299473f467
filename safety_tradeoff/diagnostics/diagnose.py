r"""`safety-tradeoff diagnose`: the papers' quantities at θ₀, and what they predict, before any sweep.

Chen et al. bound the safety gap G_s by (i) how far the proxy safety data D_s' is from the original
D_s, (ii) how much the task prompts overlap the safety prompts, and (iii) the alignment-loss landscape
around θ₀. This module measures one estimate of each on the aligned model itself:

* proxy similarity: kernel similarity / MMD² of response representations (D_s vs D_s'), L_s'(θ₀), and
  the cross-loss: L_s on D_s after a short fit of θ₀ on D_s' (Case I's λ → ∞ end point);
* context overlap: kernel similarity / MMD² of prompt representations (D_s vs each task set);
* landscape: ‖∇L_s(θ₀)‖ and β_s = |top Hessian eigenvalue| (Hessian-vector products, Lanczos or power
  iteration), giving the Case II bound G_s ≤ ‖∇L_s(θ₀)‖·r + (β_s/2)·r² for ‖θ − θ₀‖ ≤ r;

and turns them into predictions: proxy sets ordered by expected G_s under Case I, task sets ordered by
overlap (more overlap, larger G_s), and the bound at chosen radii. `check.py` sets them against a sweep.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bound import case2_bound
from .config import DiagnosticsConfig
from .examples import (Encoded, Forward, encode_pairs, forward_stats, load_pairs, make_batches, model_inputs,
                       pad_id_of)
from .orders import proxy_key
from .similarity import kernel_comparison, median_bandwidth, paired_loss_gap, weighted_loss


def load_model(name: str, *, device: str | None = None, dtype: str | None = None,
               trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Model and tokenizer from a Hub id, a folder or ``toyworld[@seed]:aligned``, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..data import resolve_model
    from ..devices import resolve_device

    path = resolve_model(name)
    if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
        raise ValueError(f"{path} is not a model folder (no config.json)")
    device = resolve_device(device)
    if dtype and dtype != "auto" and dtype not in ("float32", "bfloat16", "float16", "float64"):
        raise ValueError(f"--dtype {dtype!r}: use auto, float32, bfloat16, float16 or float64")
    torch_dtype = getattr(torch, dtype) if dtype and dtype != "auto" else ("auto" if device != "cpu" else torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer


def _fit(model: Any, batches: list[dict], steps: int, lr: float, seed: int) -> Any:
    """A copy of θ₀ after `steps` AdamW steps on `batches` (cycled in a seeded order)."""
    import torch

    fitted = copy.deepcopy(model).train()
    opt = torch.optim.AdamW([p for p in fitted.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        if not order:
            order = torch.randperm(len(batches), generator=gen).tolist()
        batch = batches[order.pop()]
        loss = fitted(**model_inputs(batch)).loss
        if not torch.isfinite(loss):
            raise ValueError(f"the cross-loss fit diverged (loss {float(loss)}); lower fit_learning_rate")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return fitted.eval()


def diagnose(model: Any, tokenizer: Any, config: DiagnosticsConfig, *, proxies: dict[str, str],
             tasks: dict[str, str], model_name: str = "", progress: Callable[[str], None] | None = None) -> dict:
    """All diagnostics as a JSON-able dict (see the module docstring and README "Theory diagnostics")."""
    from .landscape import alignment_landscape

    say = progress or (lambda _m: None)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    boot = dict(n_boot=config.bootstrap, level=config.confidence, seed=config.seed)

    def prepare(spec: str) -> tuple[list[Encoded], list[dict], Forward]:
        pairs = load_pairs(spec, prompt_column=config.prompt_column, response_column=config.response_column,
                           max_examples=config.max_examples, seed=config.seed)
        encoded = encode_pairs(tokenizer, pairs, config.max_length)
        batches = make_batches(encoded, config.batch_size, pad, device)
        return encoded, batches, forward_stats(model, batches)

    say(f"diagnose: original safety data {config.safety_dataset}")
    s_encoded, s_batches, s = prepare(config.safety_dataset)
    sigma_response, sigma_prompt = median_bandwidth(s.response_emb), median_bandwidth(s.prompt_emb)
    out: dict[str, Any] = {
        "model": model_name, "config": dataclasses.asdict(config),
        "safety": {"spec": config.safety_dataset, "n": len(s_encoded), "n_tokens": int(s.n_tokens.sum()),
                   "loss": weighted_loss(s.nll_sum, s.n_tokens, **boot).as_dict()},
        "bandwidth": {"response": sigma_response, "prompt": sigma_prompt},
        "proxies": {}, "tasks": {}}
    timings["forward_s"] = time.perf_counter() - start

    for name, spec in proxies.items():
        say(f"diagnose: proxy '{name}' ({spec})")
        t0 = time.perf_counter()
        encoded, batches, p = prepare(spec)
        entry: dict[str, Any] = {"spec": spec, "n": len(encoded)}
        entry.update({k: v.as_dict() for k, v in kernel_comparison(s.response_emb, p.response_emb, sigma_response,
                                                                  **boot).items()})
        entry["loss_theta0"] = weighted_loss(p.nll_sum, p.n_tokens, **boot).as_dict()
        entry["loss_excess"] = entry["loss_theta0"]["value"] - out["safety"]["loss"]["value"]
        if config.fit_steps:
            fit_batches = make_batches(encoded, config.fit_batch_size, pad, device)
            fitted = _fit(model, fit_batches, config.fit_steps, config.fit_learning_rate, config.seed)
            after = forward_stats(fitted, s_batches)
            del fitted
            entry["cross_loss"] = weighted_loss(after.nll_sum, after.n_tokens, **boot).as_dict()
            entry["cross_loss_gap"] = paired_loss_gap(after.nll_sum, s.nll_sum, s.n_tokens, **boot).as_dict()
        out["proxies"][name] = entry
        timings[f"proxy_{name}_s"] = time.perf_counter() - t0

    for name, spec in tasks.items():
        say(f"diagnose: task '{name}' ({spec})")
        t0 = time.perf_counter()
        encoded, _, t = prepare(spec)
        entry = {"spec": spec, "n": len(encoded)}
        entry.update({k: v.as_dict() for k, v in kernel_comparison(s.prompt_emb, t.prompt_emb, sigma_prompt,
                                                                  **boot).items()})
        out["tasks"][name] = entry
        timings[f"task_{name}_s"] = time.perf_counter() - t0

    say(f"diagnose: gradient and top Hessian eigenvalue of L_s at θ₀ on {min(config.hessian_examples, len(s_encoded))} "
        f"examples, up to {config.hessian_iterations} {config.hessian_method} iterations")
    h_batches = make_batches(s_encoded[:config.hessian_examples], config.batch_size, pad, device)
    landscape = alignment_landscape(model, h_batches, iterations=config.hessian_iterations, tol=config.hessian_tol,
                                    params=config.hessian_params, lora_config=_lora_config(config), seed=config.seed,
                                    method=config.hessian_method)
    out["landscape"] = dataclasses.asdict(landscape)
    timings["landscape_s"] = landscape.seconds
    out["predicted"] = predictions(out, config.radii)
    timings["total_s"] = time.perf_counter() - start
    out["timings"] = timings
    return out


def _lora_config(config: DiagnosticsConfig) -> Any:
    if config.hessian_params != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0)  # targets: attention projections


def predictions(diag: dict, radii: list[float]) -> dict[str, Any]:
    """Predicted orderings (lowest expected G_s first) and Case II bounds."""
    proxies = diag["proxies"]
    keyed = {name: proxy_key(entry) for name, entry in proxies.items()}
    proxy_order = sorted(keyed, key=lambda n: keyed[n][1])
    task_order = sorted(diag["tasks"], key=lambda n: diag["tasks"][n]["similarity"]["value"])
    land = diag["landscape"]
    return {"proxy_order": proxy_order, "proxy_order_by": sorted({k for k, _ in keyed.values()}),
            "task_order": task_order, "task_order_by": "prompt similarity to D_s (context overlap)",
            "bounds": {f"{r:g}": case2_bound(land["grad_norm"], land["beta"], r) for r in radii}}


def flat_metrics(diag: dict) -> dict[str, float]:
    """The headline numbers as flat `name -> float` (what a results record stores as metrics)."""
    out = {"safety_loss": diag["safety"]["loss"]["value"], "grad_norm": diag["landscape"]["grad_norm"],
           "hessian_top_eigenvalue": diag["landscape"]["top_eigenvalue"], "beta": diag["landscape"]["beta"],
           "diagnose_s": diag["timings"]["total_s"]}
    for name, entry in diag["proxies"].items():
        out[f"proxy/{name}/similarity"] = entry["similarity"]["value"]
        out[f"proxy/{name}/mmd2"] = entry["mmd2"]["value"]
        out[f"proxy/{name}/loss_theta0"] = entry["loss_theta0"]["value"]
        if "cross_loss_gap" in entry:
            out[f"proxy/{name}/cross_loss_gap"] = entry["cross_loss_gap"]["value"]
    for name, entry in diag["tasks"].items():
        out[f"task/{name}/similarity"] = entry["similarity"]["value"]
        out[f"task/{name}/mmd2"] = entry["mmd2"]["value"]
    return out
