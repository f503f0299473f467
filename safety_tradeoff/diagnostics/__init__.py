"""Theory diagnostics (Chen et al. 2025): measure, at the aligned weights θ₀, the quantities the
safety-gap bounds depend on, predict which proxy set, overlap level and radius keep safety, and check
those predictions against a sweep. See README "Theory diagnostics"."""
from .config import DiagnosticsConfig

__all__ = ["DiagnosticsConfig"]
