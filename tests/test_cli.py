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
