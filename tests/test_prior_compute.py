"""benchmarks/prior_compute.py: a variant's compute is its minutes over its own sweep's default,
seed by seed; readings are means over the variant's seeds; the figure and table are written."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from .conftest import REPO, load_benchmark

compute = load_benchmark("prior_compute")


def _row(metric, variant, per_seed):
    return {"metric": metric, "variant": variant, "per_seed": per_seed}


SWEEP = {"name": "toy", "baseline": "default", "variants": ["default", "wide", "lone"],
         "headline": [
             _row("child.minutes", "default", {"0": 10.0, "1": 8.0}),
             _row("child.minutes", "wide", {"0": 15.0, "1": 16.0}),
             _row("child.minutes", "lone", {"2": 3.0}),  # no baseline on seed 2: no point
             _row("pretrain.val_mask_iou", "default", {"0": 0.6, "1": 0.7}),
             _row("pretrain.val_mask_iou", "wide", {"0": 0.5, "1": float("nan")}),
         ]}


def test_compute_is_paired_by_seed_and_readings_are_seed_means():
    points = {p["variant"]: p for p in compute.compute_points(SWEEP)}
    assert set(points) == {"default", "wide"}
    assert points["default"]["compute"] == 1.0
    # (15/10 + 16/8) / 2, not 31/18
    assert points["wide"]["compute"] == pytest.approx(1.75)
    assert points["default"]["pretrain.val_mask_iou"] == pytest.approx(0.65)
    assert points["wide"]["pretrain.val_mask_iou"] == pytest.approx(0.5)  # nan seed left out
    # the change is paired by seed: seed 0 alone (0.5 - 0.6), not 0.5 - 0.65
    assert points["wide"]["delta pretrain.val_mask_iou"] == pytest.approx(-0.1)
    assert math.isnan(points["wide"]["synthetic/seen/pretrained.fscore@0.05"])


def test_the_script_writes_its_figure_and_table(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(SWEEP))
    out = tmp_path / "figure.png"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "prior_compute.py"),
                           str(path), "--out", str(out)], capture_output=True, text=True,
                          check=True)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "| toy | wide | 0,1 | 1.75 | 0.500 (-0.100) |" in done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    failed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "prior_compute.py"),
                             str(bad), "--out", str(out)], capture_output=True, text=True)
    assert failed.returncode != 0 and "bad.json: not a readable sweep report" in failed.stderr
