r"""Two-sample statistics with bootstrap confidence intervals.

Similarity and overlap are measured in the model's own representation space with an RBF kernel
k(a, b) = exp(−‖a − b‖² / 2σ²), σ fixed per comparison type by the median heuristic on D_s, so that
every set is compared to D_s with the same yardstick:

* ``similarity`` = ⟨m_X, m_Y⟩ / (‖m_X‖‖m_Y‖), the cosine between the kernel mean embeddings m of the
  two samples (1: indistinguishable under the kernel; → 0: disjoint). Unbiased (off-diagonal) means.
* ``mmd2`` = ‖m_X − m_Y‖², the kernel two-sample statistic (0: same distribution).

Losses are token-weighted means Σ NLL / Σ tokens; their intervals resample examples.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass
class Interval:
    """A point estimate with a bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bootstrap(estimate: Callable[..., float], sizes: tuple[int, ...], n_boot: int, level: float,
              seed: int) -> Interval:
    """`estimate(*index_tensors)` on the full samples and on `n_boot` resamples of each (percentile CI)."""
    gen = torch.Generator().manual_seed(seed)
    full = estimate(*(torch.arange(n) for n in sizes))
    values = torch.tensor([estimate(*(torch.randint(n, (n,), generator=gen) for n in sizes)) for _ in range(n_boot)],
                          dtype=torch.float64)
    alpha = (1 - level) / 2
    low, high = torch.quantile(values, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return Interval(float(full), float(low), float(high))


def median_bandwidth(x: torch.Tensor) -> float:
    """Median pairwise distance within `x` (the usual RBF bandwidth heuristic)."""
    d = torch.cdist(x.double(), x.double())
    off = d[~torch.eye(len(x), dtype=torch.bool)]
    med = float(off.median()) if off.numel() else 1.0
    return med if med > 0 else 1.0


def _rbf(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(-torch.cdist(a.double(), b.double()).pow(2) / (2 * sigma ** 2))


def _off_diag_mean(k: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Mean of k over pairs of *distinct examples*: a bootstrap resample repeats examples, and their
    self-pairs (k = 1) would bias similarity down and MMD² up if only positional diagonals were dropped."""
    sub = k[idx][:, idx]
    distinct = idx[:, None] != idx[None, :]
    return (sub * distinct).sum() / distinct.sum().clamp(min=1)


def kernel_comparison(x: torch.Tensor, y: torch.Tensor, sigma: float, *, n_boot: int = 200, level: float = 0.95,
                      seed: int = 0) -> dict[str, Interval]:
    """Kernel-mean-embedding cosine similarity and MMD² of samples `x` (the reference) and `y`."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"kernel statistics need at least 2 examples per set, got {len(x)} and {len(y)}")
    kxx, kyy, kxy = _rbf(x, x, sigma), _rbf(y, y, sigma), _rbf(x, y, sigma)

    def parts(i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _off_diag_mean(kxx, i), _off_diag_mean(kyy, j), kxy[i][:, j].mean()

    def similarity(i: torch.Tensor, j: torch.Tensor) -> float:
        xx, yy, xy = parts(i, j)
        return float(xy / torch.sqrt(xx * yy))

    def mmd2(i: torch.Tensor, j: torch.Tensor) -> float:
        xx, yy, xy = parts(i, j)
        return float(xx + yy - 2 * xy)

    sizes = (len(x), len(y))
    return {"similarity": bootstrap(similarity, sizes, n_boot, level, seed),
            "mmd2": bootstrap(mmd2, sizes, n_boot, level, seed + 1)}


def weighted_loss(nll_sum: torch.Tensor, n_tokens: torch.Tensor, *, n_boot: int = 200, level: float = 0.95,
                  seed: int = 0) -> Interval:
    """Σ NLL / Σ tokens over examples, with an interval from resampling examples."""
    return bootstrap(lambda i: float(nll_sum[i].sum() / n_tokens[i].sum()), (len(nll_sum),), n_boot, level, seed)


def paired_loss_gap(after: torch.Tensor, before: torch.Tensor, n_tokens: torch.Tensor, *, n_boot: int = 200,
                    level: float = 0.95, seed: int = 0) -> Interval:
    """(Σ NLL_after − Σ NLL_before) / Σ tokens on the same examples (a G_s-style gap), paired resampling."""
    diff = after - before
    return bootstrap(lambda i: float(diff[i].sum() / n_tokens[i].sum()), (len(diff),), n_boot, level, seed)
