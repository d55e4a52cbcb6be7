"""benchmarks/prior_curves.py: the validation curves of a prior sweep's finished children, read
from a real MLflow store (minutes from the metrics' own timestamps), and the figure."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.sweep import TAG_KEY, children, find_parent, load_sweep

from .conftest import REPO, load_benchmark

curves = load_benchmark("prior_curves")


def _spec(tmp_path):
    path = tmp_path / "steps.yaml"
    path.write_text(yaml.safe_dump({
        "name": "steps", "experiment": str(REPO / "experiments" / "smoke.yaml"),
        "stages": ["pretrain", "evaluate"], "seeds": [0], "baseline": "short",
        "variants": {"short": {"pretrain.steps": 2}, "long": {"pretrain.steps": 4},
                     "unfinished": {"pretrain.steps": 8}}}, sort_keys=False))
    return load_sweep(path)


def _child_with_pretrain(client, parent, child, finished, values):
    """A child run and its pre-training stage run, validated at steps 1, 2, ... one minute
    apart."""
    experiment = parent.info.experiment_id
    run = client.create_run(experiment, run_name=child.label, tags={
        tracking.TAG_PARENT: parent.info.run_id, TAG_KEY: child.key})
    stage = client.create_run(experiment, run_name="pretrain", start_time=1_000_000, tags={
        tracking.TAG_STAGE: "pretrain", tracking.TAG_SWEEP_CHILD: run.info.run_id,
        tracking.TAG_PARENT: run.info.run_id})
    for step, value in reversed(list(enumerate(values, start=1))):  # logged out of order
        client.log_metric(stage.info.run_id, "val/mask_iou", value,
                          timestamp=1_000_000 + 60_000 * step, step=step)
    client.set_terminated(stage.info.run_id, "FINISHED")
    if finished:
        client.set_terminated(run.info.run_id, "FINISHED")


def test_finished_children_give_their_curves_in_step_order(tmp_path, mlflow_store):
    spec = _spec(tmp_path)
    parent = find_parent(spec, [], create=True)
    client = MlflowClient(mlflow_store)
    short, long, unfinished = children(spec, [])
    _child_with_pretrain(client, parent, short, True, [0.3, 0.5])
    _child_with_pretrain(client, parent, long, True, [0.3, 0.5, 0.6, 0.65])
    _child_with_pretrain(client, parent, unfinished, False, [0.9])
    entries = {e["variant"]: e for e in curves.collect(spec, parent)}
    assert set(entries) == {"short", "long"}  # a running child is not read
    points = entries["long"]["curves"]["val/mask_iou"]
    assert [p[0] for p in points] == [1, 2, 3, 4]
    assert [p[1] for p in points] == pytest.approx([1.0, 2.0, 3.0, 4.0])  # minutes
    assert [p[2] for p in points] == pytest.approx([0.3, 0.5, 0.6, 0.65])
    assert entries["short"]["curves"]["val/colour_spread"] == []  # never logged

    out = tmp_path / "curves.png"
    curves.plot(list(entries.values()), out, "toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
