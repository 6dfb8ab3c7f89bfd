"""Quality metrics for generated molecules and PMO's sample-efficiency score.

Everything here works on plain lists of SMILES strings (or, for the AUC, on
the oracle values in call order) so that it can be used from any sampler or
training loop without carrying RDKit objects around.  The definitions follow
the two benchmarks that generative chemistry results are usually reported
against, so numbers computed here are comparable with published ones:

* validity / uniqueness / novelty / internal diversity follow MOSES
  (Polykovskiy et al. 2020, ``moses.metrics``), including its quirks
  (e.g. IntDiv averages over the full N x N similarity matrix, diagonal
  included);
* ``top_k_auc`` reproduces ``top_auc`` of PMO (Gao et al. 2022,
  ``wenhao-gao/mol_opt``, ``main/optimizer.py``), the "AUC top-10" that PMO
  ranks methods by.

Only RDKit and numpy are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from seiko.chem.filters import to_mol as _parse
from seiko.metrics import top_k_auc, top_k_mean  # noqa: F401 - PMO's label metrics, domain-free

__all__ = [
    "canonical",
    "validity",
    "uniqueness",
    "novelty",
    "internal_diversity",
    "top_k_mean",
    "top_k_auc",
    "filter_pass_rate",
    "molecule_metrics",
]

#: MOSES computes IntDiv on Morgan fingerprints with radius 2 and 1024 bits.
MORGAN_RADIUS = 2
MORGAN_BITS = 1024
#: Internal diversity is quadratic in the number of molecules; above this many
#: valid molecules a seeded random subset of this size is used.
INTDIV_MAX_MOLECULES = 2000


def canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES of ``smiles``; None if unparsable or empty.

    Canonical SMILES are what uniqueness and novelty compare, so that
    ``"CCO"`` and ``"OCC"`` count as the same molecule (MOSES'
    ``canonic_smiles``).  Reference sets passed to :func:`novelty` should be
    canonicalised with this function.
    """
    mol = _parse(smiles)
    if mol is None:
        return None
    return Chem.MolToSmiles(mol)


def _canonical_valid(smiles: Iterable[str]) -> list[str]:
    """Canonical SMILES of the valid entries, duplicates kept, order kept."""
    out = []
    for s in smiles:
        c = canonical(s)
        if c is not None:
            out.append(c)
    return out


def validity(smiles: Sequence[str]) -> float:
    """Share of ``smiles`` that parse to a non-empty molecule (MOSES "valid").

    NaN for an empty list (there is no share of nothing).
    """
    smiles = list(smiles)
    if not smiles:
        return math.nan
    n_valid = sum(_parse(s) is not None for s in smiles)
    return n_valid / len(smiles)


def uniqueness(smiles: Sequence[str]) -> float:
    """Distinct canonical SMILES / number of valid SMILES.

    This is MOSES' ``unique@k`` with k = all given molecules: MOSES drops the
    invalid ones first and then divides the number of distinct canonical
    SMILES by the number of remaining (valid) ones.  NaN if none is valid.
    """
    valid = _canonical_valid(smiles)
    if not valid:
        return math.nan
    return len(set(valid)) / len(valid)


def novelty(smiles: Sequence[str], reference: set[str]) -> float:
    """Share of distinct valid canonical SMILES that are not in ``reference``.

    MOSES' definition: duplicates among the generated molecules count once,
    so a model cannot raise novelty by repeating one novel molecule.
    ``reference`` must hold canonical SMILES (see :func:`canonical`); it is
    not re-canonicalised here because it is typically a large training set
    that is canonicalised once.  NaN if none of ``smiles`` is valid.
    """
    distinct = set(_canonical_valid(smiles))
    if not distinct:
        return math.nan
    if not isinstance(reference, (set, frozenset)):
        reference = set(reference)
    return len(distinct - reference) / len(distinct)


def _morgan_fingerprints(mols: Sequence[Chem.Mol]) -> list:
    generator = rdFingerprintGenerator.GetMorganGenerator(
        radius=MORGAN_RADIUS, fpSize=MORGAN_BITS
    )
    return [generator.GetFingerprint(m) for m in mols]


def internal_diversity(
    smiles: Sequence[str],
    p: float = 1,
    *,
    max_molecules: int = INTDIV_MAX_MOLECULES,
    seed: int = 0,
) -> float:
    """MOSES internal diversity IntDiv_p of the valid molecules in ``smiles``.

    MOSES (``moses.metrics.internal_diversity`` with ``average_agg_tanimoto``,
    ``agg='mean'``) computes, over Morgan fingerprints (radius 2, 1024 bits)
    of all valid molecules (duplicates kept)::

        IntDiv_p = 1 - mean_j ( mean_i T(i, j) ** p ) ** (1 / p)

    where i and j both run over all N molecules, i.e. the full N x N Tanimoto
    matrix *including its diagonal* (T(i, i) = 1).  So N copies of one
    molecule give exactly 0, and N distinct molecules can at most reach
    1 - 1/N, not 1.  For p = 1 this is 1 - the mean of the whole matrix.
    This follows MOSES so that numbers are comparable with published IntDiv
    values (MOSES reports IntDiv with p=1 and IntDiv2 with p=2).

    Cost is quadratic, so when there are more than ``max_molecules`` (2000)
    valid molecules, a random subset of ``max_molecules`` of them, drawn
    without replacement with ``numpy.random.default_rng(seed)``, is used
    instead: the result is then an estimate, but a deterministic one.

    Similarities come from ``rdkit.DataStructs.BulkTanimotoSimilarity``.
    (MOSES sets the 0/0 similarity of two all-zero fingerprints to 1; that
    cannot occur here because every atom sets at least one Morgan bit and
    molecules without atoms are invalid.)  NaN if no molecule is valid.
    """
    if p <= 0:
        raise ValueError(f"p must be > 0, got {p}")
    if max_molecules < 1:
        raise ValueError(f"max_molecules must be >= 1, got {max_molecules}")
    mols = [m for m in (_parse(s) for s in smiles) if m is not None]
    if not mols:
        return math.nan
    if len(mols) > max_molecules:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(mols), size=max_molecules, replace=False))
        mols = [mols[i] for i in keep]
    fps = _morgan_fingerprints(mols)
    n = len(fps)
    if p == 1:
        total = 0.0
        for fp in fps:
            total += math.fsum(DataStructs.BulkTanimotoSimilarity(fp, fps))
        return 1.0 - total / (n * n)
    # The matrix is symmetric, so a row of it is also a column.
    per_mol = np.empty(n)
    for j, fp in enumerate(fps):
        sims = np.asarray(DataStructs.BulkTanimotoSimilarity(fp, fps))
        per_mol[j] = np.mean(sims**p) ** (1.0 / p)
    return float(1.0 - per_mol.mean())


def filter_pass_rate(smiles: Sequence[str], passes: Callable[[str], bool]) -> float:
    """Share of the valid molecules for which ``passes`` returns True.

    The structural filter (PAINS, medicinal-chemistry rules, ...) is supplied
    by the caller so that this module stays independent of any particular
    rule set.  ``passes`` receives the canonical SMILES of each valid
    molecule (duplicates included, so the rate is per generated molecule).
    Invalid molecules are left out rather than counted as failing, so this
    measures the chemistry of what was generated, separately from validity.
    NaN if none is valid.
    """
    valid = _canonical_valid(smiles)
    if not valid:
        return math.nan
    return sum(bool(passes(s)) for s in valid) / len(valid)


def molecule_metrics(
    smiles: Sequence[str],
    reference: set[str] | None = None,
    passes: Callable[[str], bool] | None = None,
) -> dict[str, float]:
    """All distribution metrics of one batch, ready for logging.

    Keys: ``validity``, ``uniqueness``, ``novelty`` (only if ``reference``
    is given), ``internal_diversity`` (MOSES IntDiv_1) and ``filters``
    (the :func:`filter_pass_rate`, only if ``passes`` is given).  Values are
    floats, NaN where the metric is undefined (e.g. no valid molecule).
    """
    smiles = list(smiles)
    out: dict[str, float] = {
        "validity": float(validity(smiles)),
        "uniqueness": float(uniqueness(smiles)),
    }
    if reference is not None:
        out["novelty"] = float(novelty(smiles, reference))
    out["internal_diversity"] = float(internal_diversity(smiles))
    if passes is not None:
        out["filters"] = float(filter_pass_rate(smiles, passes))
    return out
