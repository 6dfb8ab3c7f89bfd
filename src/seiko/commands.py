"""Subcommands that work on a finished or stopped run directory, without retraining."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _run_dir(path: str) -> Path:
    run = Path(path)
    if not (run / "ledger.sqlite").is_file():
        raise SystemExit(f"seiko: error: {run} is not a seiko run directory (no ledger.sqlite)")
    return run


def sample(args) -> int:
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import seiko.cli_support  # noqa: F401  (registers the asset resolver)
    from seiko.checkpoint import load_policy
    from seiko.diffusion import sample as draw

    run = _run_dir(args.run)
    checkpoints = sorted((run / "checkpoints").glob("round_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
    if not checkpoints:
        raise SystemExit(f"seiko: error: {run} has no saved rounds")
    path = checkpoints[-1] if args.round is None else run / "checkpoints" / f"round_{args.round}.safetensors"
    if not path.is_file():
        rounds = ", ".join(p.stem.split("_")[1] for p in checkpoints)
        raise SystemExit(f"seiko: error: --round {args.round}: no such round in {run} (saved: {rounds})")
    denoiser, family, _ = load_policy(path)
    if args.prompt is not None:
        if not hasattr(family, "prompted"):
            raise SystemExit(f"seiko: error: --prompt: this run's model ({type(family).__name__}) is not "
                             f"conditioned on prompts")
        family = family.prompted([args.prompt])
    cfg = OmegaConf.load(run / "config.yaml")
    domain = instantiate(cfg.domain.problem)
    # a domain whose designs are files (images) writes them next to the TSV (or into the run folder)
    domain.attach(Path(args.out).parent if args.out else run)
    drawn = draw(denoiser.eval(), family, args.num, torch.Generator().manual_seed(args.seed))
    designs = domain.decode(drawn)
    feasible = domain.feasible_designs(designs).tolist()
    lines = [f"{d}\t{int(f)}" for d, f in zip(designs, feasible)]
    text = "design\tfeasible\n" + "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def export_pending(args) -> int:
    from seiko.ledger import Ledger

    with Ledger(_run_dir(args.run) / "ledger.sqlite") as ledger:
        count = ledger.export_pending_csv(args.csv)
    print(f"seiko: {count} pending queries written to {args.csv}")
    return 0


def import_labels(args) -> int:
    from seiko.ledger import Ledger, LedgerError

    try:
        with Ledger(_run_dir(args.run) / "ledger.sqlite") as ledger:
            count = ledger.import_labels_csv(args.csv)
    except LedgerError as err:
        print(f"seiko: error: {err}", file=sys.stderr)
        return 2
    print(f"seiko: {count} labels imported; continue with resume=true")
    return 0


def run_subcommand(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seiko")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample", help="draw designs from a saved round's policy")
    p.add_argument("run")
    p.add_argument("--round", type=int, default=None, help="default: the last saved round")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="TSV file (default: stdout); images go beside it in images/")
    p.add_argument("--prompt", default=None, help="draw every sample for this prompt (text-conditioned models)")
    p.set_defaults(func=sample)
    p = sub.add_parser("export-pending", help="write the ledger's pending queries to CSV")
    p.add_argument("run")
    p.add_argument("csv")
    p.set_defaults(func=export_pending)
    p = sub.add_parser("import-labels", help="record labels (id,value[,feasible]) from CSV")
    p.add_argument("run")
    p.add_argument("csv")
    p.set_defaults(func=import_labels)
    args = parser.parse_args(argv)
    return args.func(args)
