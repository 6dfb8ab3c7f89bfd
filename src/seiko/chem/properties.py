"""Single-molecule properties that PMO reports or optimises: QED, SA and penalized logP.

Each is a score ``mol -> float``; ``seiko.chem.pmo`` wraps them as batch oracles.

- ``qed_score``: RDKit's QED (Bickerton et al. 2012), in [0, 1], higher is more drug-like.
- ``sa_score``: the synthetic accessibility score of Ertl & Schuffenhauer (2009) from RDKit's
  Contrib ``SA_Score/sascorer.py`` and its fragment table ``fpscores.pkl.gz``; in [1, 10],
  **lower is easier to make**. This is what PyTDC's ``Oracle('SA')`` returns, and what PMO
  reports for its top molecules.
- ``sa_normalized_score``: (10 - SA) / 9, in [0, 1], higher is easier to make (a reward).
- ``penalized_logp_score``: PyTDC's ``Oracle('LogP')``, the penalized logP of the JT-VAE line of
  work *with* its ZINC normalisation: (logP - 2.4571) / 1.4343 + (-SA + 3.0526) / 0.8335 +
  (-cycle + 0.0486) / 0.2860, where ``cycle`` = max(0, L - 6) and L is the largest cycle of a
  cycle basis of the molecular graph. That basis is networkx's ``cycle_basis`` (Paton's
  spanning-tree algorithm) as PyTDC calls it, not RDKit's SSSR: for bridged ring systems it can
  hold a longer cycle (adamantane gives 8, so a penalty of 2, where its SSSR has only 6-rings;
  about 0.6% of ZINC250k molecules differ). ``largest_basis_cycle`` reproduces networkx 3.x's
  traversal order on the atom-index graph without importing networkx (networkx 2.x rooted the
  walk elsewhere and can give other lengths). The unnormalised form logP - SA - cycle is
  ``penalized_logp_terms`` summed.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

from rdkit import Chem
from rdkit.Chem import QED, Crippen, RDConfig


@lru_cache(maxsize=1)
def _sascorer():
    """RDKit's Contrib sascorer, loaded from its file (Contrib is not an importable package)."""
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("seiko_chem_sascorer", path)
    if spec is None or spec.loader is None or not os.path.exists(path):
        raise ImportError(f"RDKit's SA_Score contrib is missing: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def qed_score(mol: Chem.Mol) -> float:
    return QED.qed(mol)


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility, 1 (easy) to 10 (hard)."""
    value = _sascorer().calculateScore(mol)
    if value is None:  # sascorer's answer for a molecule without atoms
        raise ValueError("SA score of an empty molecule")
    return value


def sa_normalized_score(mol: Chem.Mol) -> float:
    """(10 - SA) / 9: 1 for the easiest molecules, 0 for the hardest."""
    return (10.0 - sa_score(mol)) / 9.0


def largest_basis_cycle(mol: Chem.Mol) -> int:
    """Length of the longest cycle in networkx's ``cycle_basis`` of the molecule's bond graph.

    Same walk as networkx 3.x on ``nx.Graph(GetAdjacencyMatrix(mol))``: each connected component
    is rooted at its highest-index atom, nodes are taken last-in first-out, neighbours in
    ascending index; a non-tree edge (z, v) closes the cycle from v up z's tree path to the first
    node that v's visited neighbours include. 0 for an acyclic molecule.
    """
    n = mol.GetNumAtoms()
    neighbours = [sorted(a.GetIdx() for a in mol.GetAtomWithIdx(i).GetNeighbors()) for i in range(n)]
    remaining = dict.fromkeys(range(n))
    longest = 0
    while remaining:
        root = remaining.popitem()[0]
        stack, parent, seen_from = [root], {root: root}, {root: set()}
        while stack:
            z = stack.pop()
            for v in neighbours[z]:
                if v not in seen_from:
                    parent[v] = z
                    stack.append(v)
                    seen_from[v] = {z}
                elif v != z and v not in seen_from[z]:
                    length, p = 2, parent[z]
                    while p not in seen_from[v]:
                        length, p = length + 1, parent[p]
                    longest = max(longest, length + 1)
                    seen_from[v].add(z)
        for node in parent:
            remaining.pop(node, None)
    return longest


def penalized_logp_terms(mol: Chem.Mol) -> tuple[float, float, float]:
    """(logP, -SA, -max(0, largest basis cycle - 6)), the three raw terms."""
    cycle = largest_basis_cycle(mol)
    return Crippen.MolLogP(mol), -sa_score(mol), -float(max(0, cycle - 6))


# ZINC250k statistics of the three terms, as in PyTDC (from the JT-VAE / graph2graph code)
_LOGP_MEAN, _LOGP_STD = 2.4570953396190123, 1.434324401111988
_SA_MEAN, _SA_STD = -3.0525811293166134, 0.8335207024513095
_CYCLE_MEAN, _CYCLE_STD = -0.0485696876403053, 0.2860212110245455


def penalized_logp_score(mol: Chem.Mol) -> float:
    """PyTDC's penalized logP: the sum of the three terms, each standardised by its ZINC stats."""
    logp, neg_sa, neg_cycle = penalized_logp_terms(mol)
    return ((logp - _LOGP_MEAN) / _LOGP_STD + (neg_sa - _SA_MEAN) / _SA_STD
            + (neg_cycle - _CYCLE_MEAN) / _CYCLE_STD)
