"""The pretrained molecule model's distribution metrics, MOSES-style, on 10,000 samples.

Why: a model that SEIKO fine-tunes must first generate the chemistry it was trained on; the
KL terms keep it there, so what it generates before any feedback bounds what it generates
after. Reports validity, uniqueness, novelty (against MOSES train), the MOSES filter pass rate
with the kind of failure, internal diversity and FCD to the MOSES test set, for the checkpoint
and, as the reference row, for MOSES training molecules themselves.

    python experiments/molecule_pretraining.py [--checkpoint PATH] [--num 10000]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import time
from pathlib import Path

import torch


def moses_test(num: int, seed: int = 0) -> list[str]:
    from seiko.chem.filters import molsets_file

    with gzip.open(molsets_file("dataset", "data", "test.csv.gz"), "rt", newline="") as f:
        rows = [r[0] for r in list(csv.reader(f))[1:]]
    return random.Random(seed).sample(rows, min(num, len(rows)))


def metrics(smiles: list[str], domain, test: list[str], fcd_model) -> dict:
    from fcd import get_fcd

    from seiko.chem.filters import passes_filters
    from seiko.chem.metrics import molecule_metrics

    out = molecule_metrics(smiles, domain.reference, passes_filters)
    out.update(domain.failures(smiles))
    valid = [s for s in smiles if s]
    out["fcd_test"] = float(get_fcd(valid, test, fcd_model)) if valid else float("nan")
    return out


def main(argv=None) -> int:
    from seiko.checkpoint import load_policy
    from seiko.cli_support import ASSET_DIR
    from seiko.diffusion import sample
    from seiko.domains import MoleculeDomain

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ASSET_DIR / "molecule_moses_selfies_l56.safetensors"))
    p.add_argument("--num", type=int, default=10_000)
    p.add_argument("--out", default="experiments/results/molecule_pretraining.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fcd import load_ref_model

    denoiser, family, spec = load_policy(args.checkpoint)
    problem = {k: v for k, v in spec.get("problem", {}).items() if k != "_target_"}
    domain = MoleculeDomain(**problem)
    test, fcd_model = moses_test(args.num), load_ref_model()
    start, tokens = time.time(), []
    denoiser.eval()
    with torch.no_grad():
        for i in range(0, args.num, 500):
            tokens.append(sample(denoiser, family, min(500, args.num - i), torch.Generator().manual_seed(i)))
    smiles = domain.decode(torch.cat(tokens))
    seconds = time.time() - start
    train = random.Random(1).sample(domain.dataset, args.num)
    rows = {"checkpoint": dict(metrics(smiles, domain, test, fcd_model), sample_seconds=round(seconds, 1)),
            "moses_train": metrics(train, domain, test, fcd_model)}
    result = {"checkpoint": args.checkpoint, "pretrain": spec.get("pretrain"), "family": spec.get("family"),
              "num": args.num, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
