# Copyright 2026 The safety-tradeoff authors. Licensed under the Apache License, Version 2.0.
"""Errors raised by the safety trainers during training."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss is NaN or infinite; the message names the global step and the loss terms."""
