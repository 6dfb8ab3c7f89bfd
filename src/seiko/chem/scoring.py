"""GuacaMol-style scoring blocks on RDKit, and a batch scorer that keeps the oracle contract.

A *score* here is a callable ``mol -> float`` on an RDKit molecule; the PMO tasks
(``seiko.chem.pmo``) are compositions of these blocks:

- ``fingerprint`` / ``Similarity``: Tanimoto similarity to a target molecule on the
  fingerprints GuacaMol uses: count-based Morgan (``ECFP4``, radius 2; ``ECFP6``, radius 3;
  ``FCFP4``, radius 2 on feature invariants), count-based atom pairs (``AP``, distance <= 10)
  and Gobbi's 2D pharmacophore bits (``PHCO``);
- modifiers that map a raw value into [0, 1]: ``Gaussian``, ``MinGaussian``, ``MaxGaussian``,
  ``Clipped``, ``Thresholded``;
- ``Descriptor`` (an RDKit descriptor through a modifier), ``Smarts`` (1 if a pattern is
  present, or absent with ``inverse``), ``Isomer`` (closeness to a molecular formula);
- ``MPO``: several scores joined by a geometric or arithmetic mean.

``score_smiles`` scores a batch of SMILES with one score, returning NaN (an infeasible design
under seiko's oracle contract) for an input that does not parse to a non-empty molecule and for
any molecule whose score raises, so one bad SMILES never loses the others' values.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator as fpgen
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

log = logging.getLogger(__name__)

Score = Callable[[Chem.Mol], float]

# ----------------------------------------------------------------------------- molecules

def to_mol(smiles: object) -> Chem.Mol | None:
    """The molecule of a SMILES string, or None if it is not a string, does not parse or is empty."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    with rdBase.BlockLogs():  # RDKit would print every parse error to stderr
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def score_smiles(score: Score, smiles: Sequence[str]) -> np.ndarray:
    """``score`` of each SMILES as float64; NaN where it has no molecule or the score raised."""
    if isinstance(smiles, str):
        raise TypeError("an oracle takes a list of SMILES, not one string")
    smiles = list(smiles)
    out = np.full(len(smiles), np.nan)
    for i, s in enumerate(smiles):
        mol = to_mol(s)
        if mol is None:
            continue
        try:
            with rdBase.BlockLogs():
                out[i] = float(score(mol))
        except Exception as e:  # noqa: BLE001 - one molecule's failure must not lose the batch
            log.debug("scoring %r failed: %s: %s", s, type(e).__name__, e)
    return out


# -------------------------------------------------------------------------- fingerprints

_MORGAN_FEATURES = fpgen.GetMorganFeatureAtomInvGen()
_COUNT_GENERATORS = {
    "ECFP4": fpgen.GetMorganGenerator(radius=2),
    "ECFP6": fpgen.GetMorganGenerator(radius=3),
    "FCFP4": fpgen.GetMorganGenerator(radius=2, atomInvariantsGenerator=_MORGAN_FEATURES),
    "AP": fpgen.GetAtomPairGenerator(maxDistance=10),
}
FINGERPRINTS = (*_COUNT_GENERATORS, "PHCO")


def fingerprint(mol: Chem.Mol, kind: str):
    """The ``kind`` fingerprint of ``mol``: a sparse count vector, or a sparse bit vector for PHCO.

    The count vectors equal RDKit's older ``GetMorganFingerprint(mol, r[, useFeatures])`` and
    ``GetAtomPairFingerprint(mol, maxLength=10)``, the ones GuacaMol and PyTDC call.
    """
    if kind == "PHCO":
        from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D
        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)
    try:
        return _COUNT_GENERATORS[kind].GetSparseCountFingerprint(mol)
    except KeyError:
        raise ValueError(f"unknown fingerprint {kind!r}; known: {', '.join(FINGERPRINTS)}") from None


# ----------------------------------------------------------------------------- modifiers

@dataclass(frozen=True)
class Gaussian:
    """exp(-(x - mu)^2 / (2 sigma^2)): 1 at ``mu``, falling off on both sides."""
    mu: float
    sigma: float

    def __call__(self, x: float) -> float:
        return float(np.exp(-0.5 * ((x - self.mu) / self.sigma) ** 2))


@dataclass(frozen=True)
class MinGaussian(Gaussian):
    """1 for x <= mu, a Gaussian tail above: rewards staying *below* ``mu``."""

    def __call__(self, x: float) -> float:
        return super().__call__(max(x, self.mu))


@dataclass(frozen=True)
class MaxGaussian(Gaussian):
    """1 for x >= mu, a Gaussian tail below: rewards reaching *at least* ``mu``."""

    def __call__(self, x: float) -> float:
        return super().__call__(min(x, self.mu))


@dataclass(frozen=True)
class Clipped:
    """Linear from (lower_x, low) to (upper_x, high), clipped to [low, high]."""
    upper_x: float
    lower_x: float = 0.0
    high: float = 1.0
    low: float = 0.0

    def __call__(self, x: float) -> float:
        slope = (self.high - self.low) / (self.upper_x - self.lower_x)
        return float(np.clip(slope * x + (self.high - slope * self.upper_x), self.low, self.high))


@dataclass(frozen=True)
class Thresholded:
    """min(x, threshold) / threshold."""
    threshold: float

    def __call__(self, x: float) -> float:
        return min(x, self.threshold) / self.threshold


def identity(x: float) -> float:
    return x


# ------------------------------------------------------------------------------- means

def geometric_mean(values: Iterable[float]) -> float:
    """exp(mean(log v)); 0 as soon as one value is 0 (the way scipy's ``gmean`` computes it)."""
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(np.asarray(list(values), dtype=np.float64)))))


def arithmetic_mean(values: Iterable[float]) -> float:
    return float(np.mean(np.asarray(list(values), dtype=np.float64)))


MEANS = {"geometric": geometric_mean, "arithmetic": arithmetic_mean}


# ------------------------------------------------------------------------------ scores

@dataclass(frozen=True)
class Similarity:
    """modifier(Tanimoto(fingerprint(mol), fingerprint(target)))."""
    target: str  # SMILES
    fp: str = "ECFP4"
    modifier: Callable[[float], float] = identity

    @cached_property
    def _target_fp(self):
        mol = to_mol(self.target)
        if mol is None:
            raise ValueError(f"target SMILES does not parse: {self.target!r}")
        return fingerprint(mol, self.fp)

    def __call__(self, mol: Chem.Mol) -> float:
        return self.modifier(DataStructs.TanimotoSimilarity(fingerprint(mol, self.fp), self._target_fp))


@dataclass(frozen=True)
class Descriptor:
    """modifier(descriptor(mol)) for any ``mol -> number`` (logP, TPSA, ring count, ...)."""
    descriptor: Callable[[Chem.Mol], float]
    modifier: Callable[[float], float] = identity

    def __call__(self, mol: Chem.Mol) -> float:
        return self.modifier(self.descriptor(mol))


@dataclass(frozen=True)
class Smarts:
    """1.0 if the SMARTS pattern occurs in the molecule, else 0.0 (swapped with ``inverse``)."""
    pattern: str
    inverse: bool = False

    @cached_property
    def _query(self) -> Chem.Mol:
        query = Chem.MolFromSmarts(self.pattern)
        if query is None:
            raise ValueError(f"SMARTS does not parse: {self.pattern!r}")
        return query

    def __call__(self, mol: Chem.Mol) -> float:
        return float(mol.HasSubstructMatch(self._query) != self.inverse)


def parse_formula(formula: str) -> list[tuple[str, int]]:
    """'C7H8N2O2' -> [('C', 7), ('H', 8), ('N', 2), ('O', 2)]; charges and other marks are ignored."""
    return [(el, int(n) if n else 1) for el, n in re.findall(r"([A-Z][a-z]*)(\d*)", formula)]


def count_atoms(mol: Chem.Mol, element: str) -> int:
    """Atoms of ``element`` in ``mol``; hydrogens counted implicit ones included."""
    if element == "H":
        mol = Chem.AddHs(mol)
    return sum(1 for atom in mol.GetAtoms() if atom.GetSymbol() == element)


@dataclass(frozen=True)
class Isomer:
    """Closeness to a molecular formula: per element, Gaussian(count, sigma 1); for the total
    atom count (hydrogens included), Gaussian(total, sigma 2); joined by ``mean``.

    The total is read off RDKit's formula of the molecule, as PyTDC does. (PyTDC first
    round-trips the molecule through canonical SMILES with explicit hydrogens; the counts are
    the same, so that step is left out.)
    """
    formula: str
    mean: str = "geometric"

    def __call__(self, mol: Chem.Mol) -> float:
        target = parse_formula(self.formula)
        scores = [Gaussian(n, 1.0)(count_atoms(mol, el)) for el, n in target]
        total = sum(n for _, n in parse_formula(CalcMolFormula(mol)))
        scores.append(Gaussian(sum(n for _, n in target), 2.0)(total))
        return MEANS[self.mean](scores)


@dataclass(frozen=True)
class MPO:
    """Multi-property objective: the ``mean`` ('geometric' or 'arithmetic') of several scores."""
    terms: tuple[Score, ...]
    mean: str = "geometric"

    def __call__(self, mol: Chem.Mol) -> float:
        return MEANS[self.mean]([term(mol) for term in self.terms])

