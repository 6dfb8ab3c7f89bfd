"""A docking oracle: AutoDock Vina scores through dockstring (García-Ortegón et al. 2022).

``DockingOracle('DRD2')(smiles)`` docks each molecule into one of dockstring's 58 prepared
targets and returns the Vina score **negated** (kcal/mol * -1: higher binds better, so the loop,
which maximises, looks for binders); ``negate=False`` gives the raw score. It is the slow,
costly oracle (10-50 s a molecule on one core), so it has no ``synthetic`` attribute: never
use it to score evaluation samples outside the budget.

A molecule that does not parse, is empty, or that dockstring fails on (ligand preparation,
Vina, no pose, timeout, a crashed worker) gives NaN for itself only, with a one-line warning;
the batch never raises for one bad molecule.

Open Babel. dockstring runs ``obabel`` from PATH and wants version 3.1. The openbabel-wheel
package ships it inside the package (``openbabel/bin/obabel``, plugins in ``openbabel/lib``);
``_use_wheel_obabel`` prepends that directory to ``os.environ["PATH"]`` and sets
BABEL_LIBDIR / BABEL_DATADIR (as ``import openbabel`` itself does) so it works without the
user editing PATH, and ahead of any older system obabel.
"""
from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

log = logging.getLogger(__name__)


def _use_wheel_obabel() -> None:
    """Put openbabel-wheel's ``obabel`` first on PATH, with its plugin and data directories."""
    spec = importlib.util.find_spec("openbabel")  # locate without importing the SWIG module
    if spec is None or not spec.submodule_search_locations:
        return  # no wheel: rely on an obabel already on PATH
    root = Path(next(iter(spec.submodule_search_locations)))
    if not ((bin_dir := root / "bin") / "obabel").is_file():
        return
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != str(bin_dir):
        os.environ["PATH"] = os.pathsep.join(p for p in (str(bin_dir), path) if p)
    for var, sub in (("BABEL_LIBDIR", "lib"), ("BABEL_DATADIR", "share")):
        found = sorted((root / sub / "openbabel").glob("3.*"))  # e.g. lib/openbabel/3.1.0
        if found:
            os.environ[var] = str(found[-1])


def canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES, or None for an unparsable or empty one (never docked)."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() > 0 else None


_TARGET = None  # the worker process's dockstring Target (its own working directory)


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout("timed out")


def _init_worker(target: str, tmp_root: str) -> None:
    global _TARGET
    _use_wheel_obabel()
    from dockstring import load_target
    _TARGET = load_target(target, working_dir=tempfile.mkdtemp(dir=tmp_root))


def _dock(smiles: str, seed: int, timeout_s: float | None) -> float:
    """Dock one molecule in this worker; raises on failure (the parent turns it into NaN).

    The timeout is a SIGALRM in the worker: it interrupts the Python between dockstring's
    steps, and ``subprocess.run`` kills the Vina / obabel child it was waiting on.
    """
    if timeout_s:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        score, _ = _TARGET.dock(smiles, num_cpus=1, seed=seed)
    finally:
        if timeout_s:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if score is None:
        raise RuntimeError("Vina found no pose")
    return float(score)


class DockingOracle:
    """Negated Vina docking score against a dockstring target: ``list[str] -> float64 array``.

    Molecules are docked in parallel over ``num_workers`` processes (default ``os.cpu_count()``),
    each giving Vina one CPU (``num_cpus=1``: one molecule a core scales better than Vina's own
    threads). Worker processes are spawned, not forked, so a parent holding torch / CUDA state is
    never copied. A canonical SMILES repeated within one call is docked once.
    """

    def __init__(self, target: str = "DRD2", num_workers: int | None = None, seed: int = 0,
                 negate: bool = True, timeout_s: float | None = None):
        from dockstring import list_all_target_names
        known = sorted(list_all_target_names())
        if target not in known:
            raise ValueError(f"oracle.target: unknown docking target {target!r}; dockstring has: {', '.join(known)}")
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"oracle.num_workers must be >= 1 or null, got {num_workers}")
        self.target, self.num_workers, self.seed = target, num_workers, seed
        self.negate, self.timeout_s = negate, timeout_s
        _use_wheel_obabel()
        if shutil.which("obabel") is None:
            raise RuntimeError("docking needs Open Babel's `obabel`: pip install openbabel-wheel")

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        smiles = list(smiles)
        RDLogger.DisableLog("rdApp.*")  # invalid SMILES are expected; they are warned about below
        keys = [canonical(s) for s in smiles]
        RDLogger.EnableLog("rdApp.*")
        for s, k in zip(smiles, keys):
            if k is None:
                log.warning("docking: invalid SMILES %r scored NaN", s)
        todo = list(dict.fromkeys(k for k in keys if k is not None))
        scores = self._dock_all(todo) if todo else {}
        sign = -1.0 if self.negate else 1.0
        return np.array([sign * scores.get(k, np.nan) if k is not None else np.nan for k in keys],
                        dtype=np.float64)

    def _dock_all(self, todo: list[str]) -> dict[str, float]:
        """Raw scores by canonical SMILES; a failed molecule is NaN, never an exception."""
        _use_wheel_obabel()  # workers inherit PATH; set again in case the caller reset it
        workers = min(self.num_workers or os.cpu_count() or 1, len(todo))
        scores: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="seiko-dock-") as tmp:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker, initargs=(self.target, tmp)) as pool:
                futures = {s: pool.submit(_dock, s, self.seed, self.timeout_s) for s in todo}
                for s, fut in futures.items():
                    try:
                        scores[s] = fut.result()
                    except Exception as e:  # noqa: BLE001 - one molecule's failure is its NaN
                        msg = " ".join(str(e).split())[:200]
                        log.warning("docking %s against %s failed, scored NaN: %s: %s",
                                    s, self.target, type(e).__name__, msg)
                        scores[s] = np.nan
        return scores

    def __reduce__(self):
        return DockingOracle, (self.target, self.num_workers, self.seed, self.negate, self.timeout_s)

    def __repr__(self) -> str:
        return f"DockingOracle({self.target!r}, num_workers={self.num_workers}, seed={self.seed})"
