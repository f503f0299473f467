"""alignment_landscape against exact quantities on a tiny random Llama (float64, CPU, offline, a few seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import LlamaConfig, LlamaForCausalLM

from safety_tradeoff.diagnostics.landscape import Landscape, alignment_landscape

VOCAB = 20
# (length, prompt tokens) per example: unequal label counts, so batching changes per-batch weights.
EXAMPLES = [(7, 3), (5, 2), (9, 6), (6, 1), (8, 4), (4, 2)]
SPLIT = [[0], [1, 2], [3, 4, 5]]


def tiny_model(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """1-layer Llama with 824 parameters (tied embeddings), small enough for an exact Hessian."""
    torch.manual_seed(seed)
    config = dict(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                  intermediate_size=16, max_position_embeddings=32, tie_word_embeddings=True, attention_dropout=0.1)
    config.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**config)).double()
    with torch.no_grad():  # larger weights than the default init, so curvature is not dominated by one direction
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def make_batches(groups: list[list[int]], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches; labels -100 on prompt and padding tokens."""
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, VOCAB, (n,), generator=gen) for n, _ in EXAMPLES]
    batches = []
    for group in groups:
        width = max(EXAMPLES[i][0] for i in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, i in enumerate(group):
            n, prompt = EXAMPLES[i]
            ids[row, :n], mask[row, :n] = seqs[i], 1
            labels[row, prompt:n] = seqs[i][prompt:]
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def exact_loss_fn(model, batches, names):
    """Token-weighted mean response NLL as a function of the flat vector of the named parameters."""
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    sizes = [math.prod(s) for s in shapes]
    n_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)

    def loss(flat):
        tensors = {n: t.reshape(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        total = 0.0
        for b in batches:
            inputs = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
            logits = functional_call(model, tensors, (), inputs).logits
            total = total + torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, VOCAB), b["labels"][:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
        return total / n_tokens

    return loss


def exact_quantities(model, batches, names):
    """(loss, gradient norm, largest-|λ| eigenvalue) of the exact Hessian, in float64."""
    params = dict(model.named_parameters())
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    f = exact_loss_fn(model, batches, names)
    model.eval()
    with sdpa_kernel([SDPBackend.MATH]):
        x = flat.clone().requires_grad_(True)
        loss = f(x)
        (grad,) = torch.autograd.grad(loss, x)
        hessian = torch.autograd.functional.hessian(f, flat, vectorize=True)
    eigenvalues = torch.linalg.eigvalsh((hessian + hessian.T) / 2)
    top = eigenvalues[eigenvalues.abs().argmax()]
    return loss.detach().item(), grad.norm().item(), top.item(), eigenvalues


@pytest.fixture(scope="module")
def exact():
    model = tiny_model()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return exact_quantities(model, make_batches([list(range(len(EXAMPLES)))]), names)


def test_matches_exact_gradient_and_hessian(exact):
    loss, grad_norm, top, eigenvalues = exact
    sorted_abs = eigenvalues.abs().sort(descending=True).values
    assert sorted_abs[1] < 0.95 * sorted_abs[0]  # a spectral gap, so power iteration converges
    model = tiny_model()
    result = alignment_landscape(model, make_batches(SPLIT), iterations=200, tol=1e-8)
    assert result.loss == pytest.approx(loss, rel=1e-9)
    assert result.grad_norm == pytest.approx(grad_norm, rel=1e-6)
    assert result.top_eigenvalue == pytest.approx(top, rel=1e-2)
    assert result.beta == abs(result.top_eigenvalue)
    assert result.converged and result.iterations < 200
    assert result.n_params == sum(p.numel() for p in model.parameters()) == 824
    assert result.n_examples == len(EXAMPLES)
    assert result.n_tokens == sum(n - max(p, 1) for n, p in EXAMPLES)
    assert result.params == "all" and result.seconds > 0


def test_lanczos_matches_exact(exact):
    loss, grad_norm, top, _ = exact
    power = alignment_landscape(tiny_model(), make_batches(SPLIT), iterations=200, tol=1e-8)
    result = alignment_landscape(tiny_model(), make_batches(SPLIT), iterations=60, tol=1e-8, method="lanczos")
    assert result.method == "lanczos" and power.method == "power"
    assert result.loss == pytest.approx(loss, rel=1e-9)
    assert result.grad_norm == pytest.approx(grad_norm, rel=1e-6)
    assert result.top_eigenvalue == pytest.approx(top, rel=1e-6)
    assert result.converged and result.iterations < 60


def test_frozen_parameters_are_excluded():
    model = tiny_model()
    model.model.embed_tokens.weight.requires_grad_(False)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    loss, grad_norm, top, _ = exact_quantities(model, make_batches([list(range(len(EXAMPLES)))]), names)
    result = alignment_landscape(model, make_batches(SPLIT), iterations=200, tol=1e-8)
    assert result.n_params == 824 - VOCAB * 8
    assert result.grad_norm == pytest.approx(grad_norm, rel=1e-6)
    assert result.top_eigenvalue == pytest.approx(top, rel=1e-2)


def test_batching_invariance():
    one = alignment_landscape(tiny_model(), make_batches([list(range(len(EXAMPLES)))]), iterations=15, tol=0.0)
    three = alignment_landscape(tiny_model(), iter(make_batches(SPLIT)), iterations=15, tol=0.0)  # a generator
    for field in ("loss", "grad_norm", "top_eigenvalue"):
        assert getattr(three, field) == pytest.approx(getattr(one, field), rel=1e-6), field
    assert (one.iterations, one.n_tokens, one.n_examples) == (three.iterations, three.n_tokens, three.n_examples)
    assert one.iterations == 15 and not one.converged


def test_model_left_unchanged():
    model = tiny_model()
    model.train()
    model.model.layers[0].mlp.training = False  # mixed per-module flags must come back as they were
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {m: m.training for m in model.modules()}
    alignment_landscape(model, make_batches(SPLIT), iterations=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert {m: m.training for m in model.modules()} == flags


def test_bound():
    result = Landscape(loss=1.0, grad_norm=0.5, top_eigenvalue=-4.0, beta=4.0, iterations=1, converged=True,
                       n_examples=1, n_tokens=1, n_params=1, params="all", seconds=0.0)
    assert result.bound(0.0) == 0.0
    assert result.bound(0.1) == pytest.approx(0.5 * 0.1 + 2.0 * 0.01)
    with pytest.raises(ValueError, match="radius"):
        result.bound(-0.1)


def lora_reference(model, batches, config, seed):
    """Exact LoRA-restricted quantities: the same seeded adapter on a copy of the model."""
    import copy

    from peft.tuners.lora import LoraModel

    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    LoraModel(clone, copy.deepcopy(config), "default")
    names = [n for n, p in clone.named_parameters() if p.requires_grad and "lora_" in n]
    return exact_quantities(clone, batches, names), names, clone


def test_lora_restricted_landscape():
    from peft import LoraConfig

    model = tiny_model()
    batches = make_batches(SPLIT)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    (loss, grad_norm, top, _), names, clone = lora_reference(model, batches, config, seed=3)
    model.eval()  # deterministic logits (attention dropout) for the before/after comparison
    with torch.no_grad():
        expected_logits = model(**{k: batches[2][k] for k in ("input_ids", "attention_mask")}).logits
    rng = torch.get_rng_state()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    result = alignment_landscape(model, batches, params="lora", lora_config=config, iterations=200, tol=1e-8, seed=3)

    lora_count = sum(p.numel() for n, p in clone.named_parameters() if "lora_" in n)
    assert result.params == "lora" and result.n_params == lora_count == 2 * (2 * 8 + 8 * 2)
    assert math.isfinite(result.top_eigenvalue) and result.grad_norm > 0
    assert result.loss == pytest.approx(loss, rel=1e-9)
    assert result.grad_norm == pytest.approx(grad_norm, rel=1e-6)
    assert result.top_eigenvalue == pytest.approx(top, rel=1e-2)
    # the caller's model is unwrapped and untouched, and the global RNG was not consumed
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert not hasattr(model, "peft_config")
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    with torch.no_grad():
        assert torch.equal(model(**{k: batches[2][k] for k in ("input_ids", "attention_mask")}).logits,
                           expected_logits)


def test_lora_default_config_on_frozen_model():
    model = tiny_model()
    model.requires_grad_(False)  # a frozen base model is fine: only the adapter is differentiated
    result = alignment_landscape(model, make_batches(SPLIT), params="lora", iterations=3)
    assert result.n_params == 2 * (8 * 8 + 8 * 8)  # r=8 on q_proj and v_proj
    assert math.isfinite(result.top_eigenvalue) and math.isfinite(result.grad_norm)
    assert not any(p.requires_grad for p in model.parameters())


def _nan_gradient_hook(module, args, output):
    """Adds sqrt(w - w) = 0 to the output: the loss is unchanged, its gradient is infinite/NaN."""
    weight = module.weight
    return output + (weight.sum() - weight.detach().sum()).sqrt()


@pytest.mark.parametrize("case, match", [
    ("no_labels", "no label tokens"),
    ("nan_loss", "loss at θ₀ is not finite"),
    ("nan_grad", "gradient of the alignment loss at θ₀ is not finite"),
    ("iterations", "iterations must be"),
    ("params", "params must be one of"),
    ("method", "method must be one of"),
    ("frozen", "no trainable parameters"),
    ("empty", "batches is empty"),
    ("lora_init", "init_lora_weights"),
])
def test_errors(case, match):
    from peft import LoraConfig

    model, batches, kwargs = tiny_model(), make_batches(SPLIT), {}
    if case == "no_labels":
        for b in batches:
            b["labels"][:, 1:] = -100  # only the unshifted first position keeps a label: still nothing to score
    elif case == "nan_loss":
        with torch.no_grad():
            model.model.norm.weight[0] = float("nan")
    elif case == "nan_grad":
        model.model.norm.register_forward_hook(_nan_gradient_hook)
    elif case == "iterations":
        kwargs["iterations"] = 0
    elif case == "params":
        kwargs["params"] = "bogus"
    elif case == "method":
        kwargs["method"] = "arnoldi"
    elif case == "frozen":
        model.requires_grad_(False)
    elif case == "empty":
        batches = []
    elif case == "lora_init":
        kwargs.update(params="lora", lora_config=LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    with pytest.raises(ValueError, match=match):
        alignment_landscape(model, batches, **kwargs)
    assert all(p.grad is None for p in model.parameters())
