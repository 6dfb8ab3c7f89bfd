"""The seiko command: one-line errors, sampling a saved round, CSV subcommands, a sweep table."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import seiko_env


def seiko(*args, cwd):
    return subprocess.run([sys.executable, "-m", "seiko", *args], cwd=cwd, env=seiko_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args, expected", [
    (["strategy=nope"], "seiko: error: strategy=nope: unknown option; choose from best_of_n"),
    (["trainer=tpu"], "seiko: error: trainer=tpu: unknown option"),
    (["budget.per_round=[64,-1]"], "seiko: error: budget.per_round[1] must be a positive int, got -1"),
    (["finetune.kl_previous=-0.5"], "seiko: error: finetune.kl_previous must be >= 0, got -0.5"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path):
    result = seiko(*args, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(expected)


@pytest.mark.parametrize("args, field", [
    (["domain.num_motifs=20"], "domain.num_motifs * domain.motif_length must be <= domain.dim"),
    (["domain.dim=7"], "use domain.num_motifs <= 1 or domain.dim >= 8"),
    (["domain.quantization=3"], "domain.quantization must be null or a divisor of domain.motif_length (4)"),
    (["oracle._target_=nope.missing"], "oracle._target_: cannot import 'nope.missing' (ModuleNotFoundError"),
    (["oracle._target_=helpers.CountingOracle"], "oracle: helpers.CountingOracle: TypeError:"),
])
def test_a_domain_or_oracle_that_cannot_be_built_is_one_line_naming_the_field(args, field, tmp_path):
    """Not Hydra's InstantiationException trace; and before anything is trained or recorded."""
    result = seiko(*args, "budget.per_round=[8]", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("seiko: error: ") and field in result.stderr
    assert not (tmp_path / "ledger.sqlite").exists()


class BrokenOracle:
    def __init__(self):
        raise RuntimeError("a bug, not a setting")


def test_a_bug_while_building_the_oracle_or_domain_keeps_its_exception():
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    from seiko.build import build_domain, build_oracle
    from seiko.config import ConfigError

    target = {"_target_": f"{__name__}.BrokenOracle"}
    with pytest.raises(RuntimeError, match="a bug") as info:
        build_oracle(OmegaConf.create(target))
    assert not isinstance(info.value, ConfigError)
    with pytest.raises(InstantiationException) as info:
        build_domain(OmegaConf.create({"domain": {"problem": target}}))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_run_then_sample_any_saved_round_and_export(tiny, tmp_path):
    run_dir = tmp_path / "run"
    result = seiko(*tiny, "strategy=greedy", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "32 labels bought" in result.stdout
    for round in (0, 1):
        out = seiko("sample", str(run_dir), "--round", str(round), "--num", "5", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        rows = out.stdout.strip().splitlines()
        assert rows[0] == "design\tfeasible" and len(rows) == 6 and all(len(r.split("\t")[0]) == 12 for r in rows[1:])
    missing = seiko("sample", str(run_dir), "--round", "9", cwd=tmp_path)
    assert missing.returncode != 0 and "no such round" in missing.stderr
    exported = seiko("export-pending", str(run_dir), str(tmp_path / "p.csv"), cwd=tmp_path)
    assert exported.returncode == 0 and "0 pending" in exported.stdout
    (tmp_path / "bad.csv").write_text("id,value\n999,0.5\n")
    bad = seiko("import-labels", str(run_dir), str(tmp_path / "bad.csv"), cwd=tmp_path)
    assert bad.returncode == 2 and "line 2" in bad.stderr


def test_sweep_writes_one_comparison_table(tiny, tmp_path):
    result = seiko("-m", *[t for t in tiny if not t.startswith("budget.per_round")], "budget.per_round=[8]",
                   "strategy=greedy,ts", "finetune.kl_pretrained=0.01,0.1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "sweep" / "sweep_summary.md").read_text().strip().splitlines()
    assert len(table) == 2 + 4
    assert sum("strategy=ts" in row for row in table) == 2
    assert (tmp_path / "sweep" / "sweep_summary.csv").is_file()
