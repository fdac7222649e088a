"""Argument types shared by the command modules: bad values become argparse messages (exit 2)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number > 0; accepts ``1_000`` and ``1e6`` as people type them."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return int(value)
