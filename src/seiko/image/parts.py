"""Config handles for models that come as a set: one ``_target_`` per part of the CPU default's
frozen scorer (``seiko.image.scorer.load_scorer``), so a domain config can name each."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from torch import nn


@lru_cache(maxsize=4)
def _scorer(folder: str | None):
    from seiko.image.scorer import load_scorer

    return load_scorer(folder)


def scorer_part(name: str, folder: str | Path | None = None) -> nn.Module:
    """``embedder``, ``quality`` or ``reward`` of the scorer in ``folder`` (None: the committed one)."""
    scorer = _scorer(None if folder is None else str(folder))
    if name not in scorer._fields:
        raise ValueError(f"domain.problem: the scorer has no part {name!r} (it has {', '.join(scorer._fields)})")
    return getattr(scorer, name)
