"""What orders proxy sets and task sets in the diagnostics' predictions, and how sure that order is.

One place for the rule, shared by :func:`.diagnose.predictions` (which sorts by it) and the report's
:mod:`.check` (which needs the confidence interval behind each place in the order). Standard library only.
"""
from __future__ import annotations


def _proxy_measure(entry: dict) -> tuple[str, dict, bool]:
    """(what orders the proxy sets, its stored interval, whether the order runs on 1 − it)."""
    if "cross_loss_gap" in entry:
        return "cross_loss_gap", entry["cross_loss_gap"], False
    return "1 - similarity", entry["similarity"], True


def proxy_key(entry: dict) -> tuple[str, float]:
    """What orders proxy sets: the cross-loss gap when measured (the λ → ∞ end point of Case I),
    else the kernel dissimilarity of responses (1 − similarity)."""
    what, interval, flipped = _proxy_measure(entry)
    return what, 1.0 - interval["value"] if flipped else interval["value"]


def order_interval(diag: dict, factor: str, name: str) -> tuple[float, float] | None:
    """(low, high) of the quantity behind `name`'s place in the predicted order: :func:`proxy_key`'s for a
    proxy set (``factor="proxy"``), prompt similarity for a task set. None when the diagnostics stored none."""
    entry = (diag.get("proxies" if factor == "proxy" else "tasks") or {}).get(name) or {}
    try:
        if factor != "proxy":
            return entry["similarity"]["low"], entry["similarity"]["high"]
        _, interval, flipped = _proxy_measure(entry)
        return (1.0 - interval["high"], 1.0 - interval["low"]) if flipped else (interval["low"], interval["high"])
    except (KeyError, TypeError):
        return None
