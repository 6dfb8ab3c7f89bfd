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

import heapq
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator

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


def _parse(smiles: object) -> Chem.Mol | None:
    """RDKit molecule for ``smiles``, or None if it is unusable.

    Unusable means what MOSES' ``get_mol`` rejects (not a string, empty
    string, RDKit cannot parse/sanitize it) plus molecules without atoms
    (e.g. ``"."``), which carry no chemistry and would otherwise count as
    valid.  RDKit's parse-error log lines are silenced: invalid strings are
    expected from a generative model and are counted, not reported.
    """
    if not isinstance(smiles, str) or not smiles:
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


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


def _oracle_values(values: Iterable[float]) -> np.ndarray:
    """Values as a 1-D float array, NaN and -inf replaced by 0.

    PMO's oracle scores an invalid molecule 0, so a failed evaluation (NaN)
    or a "worst possible" -inf must count as 0 too; otherwise NaN would
    poison every later top-k mean and -inf would make the AUC -inf.
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                     dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    arr = arr.copy()
    arr[np.isnan(arr) | np.isneginf(arr)] = 0.0
    return arr


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _mean_desc(top: Iterable[float]) -> float:
    # PMO takes np.mean of the top values sorted in descending order; doing
    # the same keeps results identical down to floating-point summation order.
    return float(np.mean(sorted(top, reverse=True)))


def top_k_mean(values: Iterable[float], k: int = 10) -> float:
    """Mean of the ``k`` largest values (all of them if fewer than ``k``).

    This is PMO's "avg_top10" for k=10.  NaN and -inf count as 0, as in
    :func:`top_k_auc`.  An empty input gives 0.0, the value PMO's AUC starts
    from before the first oracle call.
    """
    _check_positive_int("k", k)
    arr = _oracle_values(values)
    if arr.size == 0:
        return 0.0
    return _mean_desc(heapq.nlargest(k, arr.tolist()))


def top_k_auc(
    values_in_call_order: Iterable[float],
    budget: int,
    k: int = 10,
    freq: int = 100,
) -> float:
    """PMO's top-k AUC (``top_auc(buffer, k, finish=True, freq, budget)``).

    PMO (Gao et al. 2022) ranks optimisers by the area under the curve of
    "mean of the top-10 values found so far" against the number of oracle
    calls, divided by the budget, so that finding good molecules *early*
    counts.  ``values_in_call_order`` are the oracle values of the distinct
    molecules in the order they were first scored (PMO's ``mol_buffer``
    sorted by call index; invalid molecules already 0).  Exactly as PMO's
    code does:

    * every ``freq`` calls (checkpoints ``freq, 2*freq, ...`` strictly below
      ``min(n, budget)``, n = number of values) take the mean of the top-k
      values so far (of all of them while fewer than k) and add the
      trapezoid ``freq * (now + prev) / 2``, starting from ``prev = 0`` at
      call 0, so the first segment ramps up from (0, 0);
    * a last trapezoid runs from the last checkpoint to call n, using the
      top-k mean of all n values;
    * a run that stopped before the budget (``n < budget``) is extended flat
      at its last top-k mean up to ``budget`` (PMO's ``finish=True``);
    * the sum is divided by ``budget``.

    Because of the ramp from (0, 0), a constant sequence of value v with
    n >= budget scores ``v * (1 - freq / (2 * budget))`` (0.95 v for budget
    1000 and freq 100), not v: that is PMO's definition, kept on purpose.

    Deviations, only where PMO's behaviour is undefined or accidental:
    NaN and -inf count as 0 (PMO scores invalid molecules 0); values past
    the first ``budget`` are ignored (PMO's oracle stops scoring at the
    budget, and its ``top_auc`` would otherwise credit extra calls and can
    exceed the maximum); an empty sequence gives 0.0 (PMO's would be NaN).
    """
    _check_positive_int("budget", budget)
    _check_positive_int("k", k)
    _check_positive_int("freq", freq)
    arr = _oracle_values(values_in_call_order)[:budget]
    n = int(arr.size)
    if n == 0:
        return 0.0

    total = 0.0
    prev = 0.0
    called = 0
    heap: list[float] = []  # min-heap holding the k largest values so far
    seen = 0

    def advance_to(idx: int) -> None:
        nonlocal seen
        for x in arr[seen:idx].tolist():
            if len(heap) < k:
                heapq.heappush(heap, x)
            elif x > heap[0]:
                heapq.heapreplace(heap, x)
        seen = idx

    for idx in range(freq, min(n, budget), freq):
        advance_to(idx)
        now = _mean_desc(heap)
        total += freq * (now + prev) / 2
        prev = now
        called = idx
    advance_to(n)
    now = _mean_desc(heap)
    total += (n - called) * (now + prev) / 2
    if n < budget:
        total += (budget - n) * now
    return total / budget


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
