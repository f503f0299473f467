"""Which scorer produced each refusal-based metric, and how well each scorer agrees with people.

``TASK_METRIC_SCORERS`` names the scorer behind every refusal-based metric the lm-eval tasks return
(``lm_eval_tasks/metrics.py``), ``REPORT_METRIC_SCORERS`` the same for the report's canonical names
(:mod:`safety_tradeoff.lm_eval_results`), so a rate is never shown without its scorer. The two namespaces
differ on one name: in the ``safety_tradeoff_xstest_unsafe`` task's own results ``harmful_rate_xstest`` is
XSTest's string match, while the report's ``harmful_rate_xstest`` is that task's ``harmful_rate`` (default
scorer). ``measured_agreement()`` reads ``agreement.json``: each scorer's agreement
with the human refusal/compliance labels of the frozen test split (tests/data/refusal_eval/test.jsonl),
with a 95% Wilson interval. Regenerate it after any scorer change (tests check it is current)::

    python -m safety_tradeoff.refusal tests/data/refusal_eval/test.jsonl --agreement-json \\
        safety_tradeoff/refusal/agreement.json

Standard library only: the report imports this.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AGREEMENT_FILE = Path(__file__).with_name("agreement.json")

#: lm-eval result key -> the scorer that decides refusal for it (``<key>_<category>`` keys inherit).
TASK_METRIC_SCORERS: dict[str, str] = {
    "harmful_rate": "default", "partial_refusal_rate": "default", "over_refusal_rate": "default",
    "harmful_rate_gcg": "gcg", "harmful_rate_xstest": "xstest", "over_refusal_rate_xstest": "xstest",
}
#: report (canonical) metric -> scorer; every benchmark's ``harmful_rate`` is the default scorer's.
REPORT_METRIC_SCORERS: dict[str, str] = {
    "harmful_rate": "default", "harmful_rate_far": "default", "harmful_rate_harmbench": "default",
    "harmful_rate_strongreject": "default", "harmful_rate_xstest": "default", "over_refusal_rate": "default",
    "harmful_rate_gcg": "gcg",
}


@dataclass(frozen=True)
class Agreement:
    """Agreement of one scorer with human labels: ``agreeing`` of ``n`` responses, with a 95% interval."""
    scorer: str
    agreeing: int
    n: int
    low: float
    high: float
    dataset: str

    @property
    def rate(self) -> float:
        return self.agreeing / self.n

    def describe(self) -> str:
        """'0.934 [0.91, 0.95], n = 590'."""
        return f"{self.rate:.3f} [{self.low:.2f}, {self.high:.2f}], n = {self.n}"


@lru_cache(maxsize=1)
def measured_agreement() -> dict[str, Agreement]:
    """Scorer name -> its measured agreement (empty if the file is missing, e.g. a stripped install)."""
    try:
        data = json.loads(AGREEMENT_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: Agreement(name, int(d["agreeing"]), int(d["n"]), float(d["low"]), float(d["high"]),
                            str(data.get("dataset", ""))) for name, d in data["scorers"].items()}


def scorer_of(metric: str, table: dict[str, str] = REPORT_METRIC_SCORERS) -> str | None:
    """The scorer behind a metric; ``<metric>_<category>`` inherits its base metric's scorer."""
    base = max((m for m in table if metric == m or metric.startswith(m + "_")), key=len, default=None)
    return table[base] if base else None


def metric_agreement(metric: str) -> Agreement | None:
    """The measured agreement of the scorer behind a report metric (None if not refusal-based)."""
    scorer = scorer_of(metric)
    return measured_agreement().get(scorer) if scorer else None
