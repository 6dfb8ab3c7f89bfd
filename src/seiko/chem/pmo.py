"""The molecule oracles of the PMO benchmark (Gao et al. 2022, "Sample efficiency matters"), on RDKit.

PMO's tasks are GuacaMol's goal-directed scoring functions as PyTDC 1.1.15's
``tdc.Oracle(name=...)`` implements them; this module rebuilds the twenty that need only
RDKit (not drd2 / gsk3b / jnk3, which are trained classifiers) from ``seiko.chem.scoring``, plus
``sa``, ``sa_normalized`` and ``penalized_logp`` (``seiko.chem.properties``).
``tests/test_pmo_oracles.py`` checks every one against PyTDC's own values
(``tests/data/pmo_reference.json``, made by ``experiments/pmo_reference.py``).

Each oracle is a plain callable ``list[str] (SMILES) -> float64 array`` (seiko's oracle
contract), by its module name (``seiko.chem.pmo.osimertinib_mpo``), in ``PMO_TASKS`` /
``ORACLES``, or as ``PMOOracle('osimertinib_mpo')`` (what ``configs/oracle/*.yaml`` build).

Invalid molecules. A SMILES that does not parse, an empty string, a molecule without atoms, or
one whose score raises gives **NaN**: the ledger records it as infeasible, and the rest of the
batch keeps its values. PyTDC instead returns 0.0 for an unparsable SMILES (also for ``sa``,
where 0 would read as better than any real molecule, and for ``penalized_logp``), scores the
empty string as an empty molecule (e.g. qed 0.339, deco_hop 0.5) or raises on it (sa,
penalized_logp). PMO's protocol scores an invalid molecule 0: that rule belongs to the
benchmark's bookkeeping (a NaN label counted as 0), not to the oracle.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import Crippen, GraphDescriptors, rdMolDescriptors

from seiko.chem import properties
from seiko.chem.scoring import (
    MPO, Clipped, Descriptor, Gaussian, Isomer, MaxGaussian, MinGaussian, Similarity, Smarts,
    count_atoms, score_smiles,
)


class MoleculeOracle:
    """A batch oracle from a per-molecule score: SMILES list -> float64 array, NaN if invalid."""

    def __init__(self, name: str, doc: str, score: Callable[[Chem.Mol], float]):
        self.name, self.__doc__, self.score = name, doc, score

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        return score_smiles(self.score, smiles)

    def __reduce__(self):  # pickles by name (the scores hold RDKit functions, which do not pickle)
        return _registered, (self.name,)

    def __repr__(self) -> str:
        return f"<PMO oracle {self.name}>"


def _registered(name: str) -> MoleculeOracle:
    return ORACLES[name]


logp, tpsa = Crippen.MolLogP, rdMolDescriptors.CalcTPSA

OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
AMLODIPINE = r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
TROGLITAZONE = "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O"
THIOTHIXENE = "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1"
ALBUTEROL = "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"
MESTRANOL = "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1"
CAMPHOR, MENTHOL = "CC1(C)C2CCC1(C)C(=O)C2", "CC(C)C1CCC(C)CC1O"
TADALAFIL = "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C"
SILDENAFIL = "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C"
HOP_PHARMACOPHORE = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
HOP_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"  # the quinazoline core


def fluorines(mol: Chem.Mol) -> int:
    return count_atoms(mol, "F")


_sitagliptin = Chem.MolFromSmiles(SITAGLIPTIN)
_SITA_LOGP, _SITA_TPSA = logp(_sitagliptin), tpsa(_sitagliptin)
_SITA_BERTZ = GraphDescriptors.BertzCT(_sitagliptin)

albuterol_similarity = MoleculeOracle(
    "albuterol_similarity", "Similarity to albuterol: FCFP4 Tanimoto, full marks from 0.75.",
    Similarity(ALBUTEROL, "FCFP4", Clipped(0.75)))
amlodipine_mpo = MoleculeOracle(
    "amlodipine_mpo", "Like amlodipine (ECFP4 Tanimoto) with three rings; geometric mean.",
    MPO((Similarity(AMLODIPINE, "ECFP4"), Descriptor(rdMolDescriptors.CalcNumRings, Gaussian(3, 0.5)))))
celecoxib_rediscovery = MoleculeOracle(
    "celecoxib_rediscovery", "Rediscover celecoxib: ECFP4 Tanimoto to it.",
    Similarity(CELECOXIB, "ECFP4"))
deco_hop = MoleculeOracle(
    "deco_hop", "Decoration hop: keep the quinazoline scaffold and the pharmacophore (PHCO"
    " Tanimoto, full marks from 0.85), lose the sulfone and the benzothiazole amine; arithmetic mean.",
    MPO((Similarity(HOP_PHARMACOPHORE, "PHCO", Clipped(0.85)),
         Smarts("CS([#6])(=O)=O", inverse=True),
         Smarts("[#7]-c1ccc2ncsc2c1", inverse=True),
         Smarts(HOP_SCAFFOLD)), mean="arithmetic"))
fexofenadine_mpo = MoleculeOracle(
    "fexofenadine_mpo", "Like fexofenadine (AP Tanimoto, full marks from 0.8) with TPSA >= 90 and"
    " logP <= 4; geometric mean.",
    MPO((Descriptor(tpsa, MaxGaussian(90, 10)), Descriptor(logp, MinGaussian(4, 1)),
         Similarity(FEXOFENADINE, "AP", Clipped(0.8)))))
isomers_c7h8n2o2 = MoleculeOracle(
    "isomers_c7h8n2o2", "Isomers of C7H8N2O2: closeness to the formula.", Isomer("C7H8N2O2"))
isomers_c9h10n2o2pf2cl = MoleculeOracle(
    "isomers_c9h10n2o2pf2cl", "Isomers of C9H10N2O2PF2Cl: closeness to the formula.",
    Isomer("C9H10N2O2PF2Cl"))
median1 = MoleculeOracle(
    "median1", "Between camphor and menthol: geometric mean of the two ECFP4 Tanimotos.",
    MPO((Similarity(CAMPHOR, "ECFP4"), Similarity(MENTHOL, "ECFP4"))))
median2 = MoleculeOracle(
    "median2", "Between tadalafil and sildenafil: geometric mean of the two ECFP6 Tanimotos.",
    MPO((Similarity(TADALAFIL, "ECFP6"), Similarity(SILDENAFIL, "ECFP6"))))
mestranol_similarity = MoleculeOracle(
    "mestranol_similarity", "Similarity to mestranol: AP Tanimoto, full marks from 0.75.",
    Similarity(MESTRANOL, "AP", Clipped(0.75)))
osimertinib_mpo = MoleculeOracle(
    "osimertinib_mpo", "Like osimertinib (FCFP4 Tanimoto, full marks from 0.8) but not too like it"
    " (ECFP6 Tanimoto <= 0.85), with TPSA >= 100 and logP <= 1; geometric mean.",
    MPO((Descriptor(tpsa, MaxGaussian(100, 10)), Descriptor(logp, MinGaussian(1, 1)),
         Similarity(OSIMERTINIB, "FCFP4", Clipped(0.8)),
         Similarity(OSIMERTINIB, "ECFP6", MinGaussian(0.85, 0.1)))))
perindopril_mpo = MoleculeOracle(
    "perindopril_mpo", "Like perindopril (ECFP4 Tanimoto) with two aromatic rings; geometric mean.",
    MPO((Similarity(PERINDOPRIL, "ECFP4"),
         Descriptor(rdMolDescriptors.CalcNumAromaticRings, Gaussian(2, 0.5)))))
qed = MoleculeOracle("qed", "QED drug-likeness, in [0, 1].", properties.qed_score)
ranolazine_mpo = MoleculeOracle(
    "ranolazine_mpo", "Like ranolazine (AP Tanimoto, full marks from 0.7) with TPSA >= 95,"
    " logP >= 7 and one fluorine; geometric mean.",
    MPO((Descriptor(tpsa, MaxGaussian(95, 20)), Descriptor(logp, MaxGaussian(7, 1)),
         Similarity(RANOLAZINE, "AP", Clipped(0.7)), Descriptor(fluorines, Gaussian(1, 1.0)))))
scaffold_hop = MoleculeOracle(
    "scaffold_hop", "Scaffold hop: keep the decorations and the pharmacophore (PHCO Tanimoto, full"
    " marks from 0.75), lose the quinazoline scaffold; arithmetic mean.",
    MPO((Similarity(HOP_PHARMACOPHORE, "PHCO", Clipped(0.75)),
         Smarts("[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"),
         Smarts(HOP_SCAFFOLD, inverse=True)), mean="arithmetic"))
sitagliptin_mpo = MoleculeOracle(
    "sitagliptin_mpo", "Sitagliptin's formula, logP and TPSA on a structure unlike it (ECFP4"
    " Tanimoto near 0); geometric mean.",
    MPO((Similarity(SITAGLIPTIN, "ECFP4", Gaussian(0, 0.1)), Descriptor(logp, Gaussian(_SITA_LOGP, 0.2)),
         Descriptor(tpsa, Gaussian(_SITA_TPSA, 5)), Isomer("C16H15F6N5O"))))
thiothixene_rediscovery = MoleculeOracle(
    "thiothixene_rediscovery", "Rediscover thiothixene: ECFP4 Tanimoto to it.",
    Similarity(THIOTHIXENE, "ECFP4"))
troglitazone_rediscovery = MoleculeOracle(
    "troglitazone_rediscovery", "Rediscover troglitazone: ECFP4 Tanimoto to it.",
    Similarity(TROGLITAZONE, "ECFP4"))
valsartan_smarts = MoleculeOracle(
    "valsartan_smarts", "Valsartan's substructure (a SMARTS) with sitagliptin's TPSA, logP and"
    " Bertz complexity; geometric mean, so 0 without the substructure.",
    MPO((Smarts("CN(C=O)Cc1ccc(c2ccccc2)cc1"), Descriptor(tpsa, Gaussian(_SITA_TPSA, 5)),
         Descriptor(logp, Gaussian(_SITA_LOGP, 0.2)),
         Descriptor(GraphDescriptors.BertzCT, Gaussian(_SITA_BERTZ, 30)))))
zaleplon_mpo = MoleculeOracle(
    "zaleplon_mpo", "Like zaleplon (ECFP4 Tanimoto) with the formula C19H17N3O2; geometric mean.",
    MPO((Similarity(ZALEPLON, "ECFP4"), Isomer("C19H17N3O2"))))

sa = MoleculeOracle(
    "sa", "Synthetic accessibility (Ertl & Schuffenhauer), 1 easy to 10 hard: PyTDC's 'SA', a cost.",
    properties.sa_score)
sa_normalized = MoleculeOracle(
    "sa_normalized", "(10 - SA) / 9 in [0, 1], higher is easier to make: SA as a reward.",
    properties.sa_normalized_score)
penalized_logp = MoleculeOracle(
    "penalized_logp", "PyTDC's 'LogP': logP - SA - (largest cycle > 6) penalty, each term"
    " standardised by its ZINC mean and std.", properties.penalized_logp_score)

PMO_TASKS: dict[str, MoleculeOracle] = {o.name: o for o in (
    albuterol_similarity, amlodipine_mpo, celecoxib_rediscovery, deco_hop, fexofenadine_mpo,
    isomers_c7h8n2o2, isomers_c9h10n2o2pf2cl, median1, median2, mestranol_similarity,
    osimertinib_mpo, perindopril_mpo, qed, ranolazine_mpo, scaffold_hop, sitagliptin_mpo,
    thiothixene_rediscovery, troglitazone_rediscovery, valsartan_smarts, zaleplon_mpo)}
"""The twenty RDKit-only PMO tasks, by PMO's (lower-case) names."""
ORACLES: dict[str, MoleculeOracle] = {**PMO_TASKS, **{o.name: o for o in (sa, sa_normalized, penalized_logp)}}
"""Every oracle of this module: the PMO tasks plus sa, sa_normalized and penalized_logp."""


class PMOOracle:
    """The named PMO oracle (a key of ``ORACLES``) as an instance: ``PMOOracle('qed')(smiles)``.

    ``synthetic``: computed in milliseconds, so ``eval.with_oracle=auto`` scores each round's
    fresh samples with it (outside the ledger and the budget), as for the Ehrlich functions.
    """

    synthetic = True

    def __init__(self, name: str):
        if name not in ORACLES:
            raise ValueError(f"oracle.name: unknown PMO task {name!r}; known: {', '.join(sorted(ORACLES))}")
        self.name = name
        self._oracle = ORACLES[name]
        self.__doc__ = self._oracle.__doc__

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        return self._oracle(smiles)

    def __reduce__(self):
        return PMOOracle, (self.name,)

    def __repr__(self) -> str:
        return f"PMOOracle({self.name!r})"
