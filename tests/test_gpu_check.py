"""`make gpu-check`'s CPU dry run: what runs without CUDA passes, the rest says why it skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"),
                           "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert report["device"] == "cpu" and report["dry_run"] is True
    for name in ("environment", "fused layer", "torchrun"):
        assert status[name] == "passed", (name, report)
    tiny = [c for c in report["checks"] if c["name"].startswith("tiny stages")
            and c["status"] == "passed"]
    assert len(tiny) == 1, report  # the CPU's own precision
    assert set(tiny[0]["stage_seconds"]) == {"render", "pretrain", "selftrain", "distill",
                                             "evaluate"}
    assert tiny[0]["eval_rows"] > 0
    skipped = {c["name"]: c["reason"] for c in report["checks"] if c["status"] == "skipped"}
    assert skipped == {"tiny stages, fp16 + GradScaler": "needs CUDA",
                       "paper-size steps": skipped["paper-size steps"]}
    assert "needs CUDA" in skipped["paper-size steps"]
