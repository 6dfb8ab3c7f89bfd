"""The MOSES medicinal-chemistry filters: what counts as a feasible molecule.

A molecule passes when it parses, has no ring of 8 or more atoms, no charged atom, only the
atoms C, N, S, O, F, Cl, Br (and H), and matches none of the MCF and PAINS SMARTS patterns
that ship in the molsets wheel (``moses/metrics/mcf.csv`` and ``wehi_pains.csv``). This is
``moses.metrics.utils.mol_passes_filters`` rewritten, because ``import moses`` fails on current
pandas; the CSVs are read as plain files. ``failed_filter`` names the first rule a molecule
breaks, so a model whose samples fail can be diagnosed rather than only counted.
"""
from __future__ import annotations

import csv
import importlib.util
from functools import lru_cache
from pathlib import Path

from rdkit import Chem, rdBase

ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
MAX_RING = 7  # rings of 8 or more atoms fail


def molsets_file(*parts: str) -> Path:
    """A data file of the molsets wheel, found without importing ``moses`` (which fails)."""
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the molsets package (MOSES data and filters) is not installed: pip install --no-deps molsets")
    return Path(list(spec.submodule_search_locations)[0], *parts)


@lru_cache(maxsize=1)
def patterns() -> tuple[tuple[str, Chem.Mol], ...]:
    """(name, compiled SMARTS) of every MCF pattern, then every PAINS one."""
    out = []
    with open(molsets_file("metrics", "mcf.csv"), newline="") as f:
        out += [(row["names"], row["smarts"]) for row in csv.DictReader(f)]
    with open(molsets_file("metrics", "wehi_pains.csv"), newline="") as f:
        out += [(name.strip().removeprefix("<regId=").removesuffix(">"), smarts.strip())
                for smarts, name in csv.reader(f)]
    compiled = tuple((name, Chem.MolFromSmarts(smarts)) for name, smarts in out)
    broken = [name for name, mol in compiled if mol is None]
    if broken:
        raise RuntimeError(f"MOSES filter SMARTS that RDKit cannot parse: {broken[:3]}")
    return compiled


def to_mol(smiles: object) -> Chem.Mol | None:
    """RDKit molecule, or None for a non-string, an unparsable string or an empty molecule
    (quietly: invalid strings are expected from a generative model, and counted)."""
    if not isinstance(smiles, str) or not smiles:
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def failed_filter(smiles: str) -> str | None:
    """The first rule the molecule breaks ("invalid", "ring>=8", "charge", "atom:P", or a
    pattern's name), None when it passes every filter."""
    mol = to_mol(smiles)
    if mol is None:
        return "invalid"
    if any(len(ring) > MAX_RING for ring in mol.GetRingInfo().AtomRings()):
        return "ring>=8"
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return "charge"
    odd = next((a.GetSymbol() for a in mol.GetAtoms() if a.GetSymbol() not in ALLOWED_ATOMS), None)
    if odd is not None:
        return f"atom:{odd}"
    with_h = Chem.AddHs(mol)
    return next((name for name, pattern in patterns() if with_h.HasSubstructMatch(pattern)), None)


def passes_filters(smiles: str) -> bool:
    return failed_filter(smiles) is None
