"""Terminal tables of a `diagnose` result (rich)."""
from __future__ import annotations

from typing import Any

from .check_report import fmt_interval


def rich_tables(diag: dict) -> list[Any]:
    from rich.table import Table

    level = f"{100 * diag['config']['confidence']:g}%"
    pred = diag["predicted"]
    tables = []
    proxies = Table(title=f"Proxy safety sets vs D_s = {diag['safety']['spec']} (predicted G_s rank 1 = lowest; "
                          f"{level} bootstrap intervals)")
    for col in ("proxy", "n", "response similarity", "MMD²", "L_s'(θ₀)", "cross-loss gap ΔL_s", "rank"):
        proxies.add_column(col, justify="left" if col == "proxy" else "right")
    for name, e in diag["proxies"].items():
        proxies.add_row(name, str(e["n"]), fmt_interval(e["similarity"]), f"{e['mmd2']['value']:.4f}",
                        f"{e['loss_theta0']['value']:.3f}", fmt_interval(e["cross_loss_gap"]) if "cross_loss_gap" in e else "–",
                        str(pred["proxy_order"].index(name) + 1))
    if diag["proxies"]:
        tables.append(proxies)
    tasks = Table(title="Task sets: context overlap with D_s prompts (rank 1 = least overlap = lowest predicted G_s)")
    for col in ("task", "n", "prompt similarity", "MMD²", "rank"):
        tasks.add_column(col, justify="left" if col == "task" else "right")
    for name, e in diag["tasks"].items():
        tasks.add_row(name, str(e["n"]), fmt_interval(e["similarity"]), f"{e['mmd2']['value']:.4f}",
                      str(pred["task_order"].index(name) + 1))
    if diag["tasks"]:
        tables.append(tasks)
    land = diag["landscape"]
    table = Table(title="Alignment-loss landscape at θ₀ and the Case II bound G_s ≤ ‖∇L_s‖·r + (β_s/2)·r²")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [("L_s(θ₀) on D_s", fmt_interval(diag["safety"]["loss"])),
            ("‖∇L_s(θ₀)‖", f"{land['grad_norm']:.4g}"),
            ("β_s = |top Hessian eigenvalue|", f"{land['beta']:.4g} (signed {land['top_eigenvalue']:.4g})"),
            (f"{land.get('method', 'power')} iterations",
             f"{land['iterations']} ({'converged' if land['converged'] else 'NOT converged'})"),
            ("Hessian sample", f"{land['n_examples']} examples, {land['n_tokens']} tokens, "
                               f"{land['n_params']:,} {land['params']} parameters"),
            *((f"bound at r = {r}", f"{b:.4g}") for r, b in pred["bounds"].items()),
            ("time", f"{diag['timings']['total_s']:.1f} s (landscape {land['seconds']:.1f} s)")]
    for row in rows:
        table.add_row(*row)
    tables.append(table)
    return tables
