"""``ss3d sweep``: the sweep file, the scope of a child's runs, the statistics across seeds, the
SLURM path, and a tiny sweep end to end (parent, children, nested stage runs, skip on rerun)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import dump_yaml, load_config
from ss3d.eval.seeds import (
    paired_item_difference,
    paired_seed_difference,
    seed_interval,
    verdict,
)
from ss3d.sweep import SweepError, children, load_sweep, slurm_commands
from ss3d.sweep_report import ChildResult, against_pretrained_rows, aggregate, markdown_table

from .conftest import REPO
from .test_selftrain import SELF

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom


def _write_sweep(tmp_path, **fields):
    base = tmp_path / "base.yaml"
    if not base.exists():
        base.write_text("name: base\n")
    spec = {"name": "s", "experiment": "base.yaml", "stages": ["selftrain", "evaluate"],
            "seeds": [0, 1], "baseline": "a", "variants": {"a": {}, "b": {"selftrain.lr": 1e-4}},
            **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# ----------------------------------------------------------------------------------------------
# Statistics across seeds
# ----------------------------------------------------------------------------------------------
def test_seed_interval_is_the_student_t_interval():
    ci = seed_interval([0.5, 0.6, 0.7])
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert ci.n == 3 and ci.estimate == pytest.approx(0.6)
    assert (ci.low, ci.high) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    one = seed_interval([0.4, float("nan")])
    assert one.n == 1 and one.estimate == 0.4 and math.isnan(one.low) and math.isnan(one.high)


def test_paired_differences_use_the_same_seeds_and_items():
    diff = paired_seed_difference({0: 0.7, 1: 0.89, 2: 0.81, 5: 3.0}, {0: 0.5, 1: 0.7, 2: 0.6})
    # 0.2, 0.19, 0.21 on the shared seeds: mean 0.2, sd 0.01
    assert diff.n == 3 and diff.estimate == pytest.approx(0.2)
    assert diff.low == pytest.approx(0.2 - T_975_2 * 0.01 / math.sqrt(3))
    assert verdict(diff) == "better" and verdict(diff, higher_is_better=False) == "worse"
    constant = paired_item_difference(np.full((3, 5), 0.05))
    assert (constant.estimate, constant.low, constant.high) == pytest.approx((0.05, 0.05, 0.05))
    noisy = paired_item_difference(np.random.default_rng(0).normal(0, 1, (3, 40)))
    assert noisy.low < 0 < noisy.high and verdict(noisy) == "level"
    assert verdict(paired_seed_difference({0: 1.0}, {0: 0.0}), seeds=1).startswith("one seed")
    same = paired_seed_difference({0: 0.3, 1: 0.4}, {0: 0.2, 1: 0.3})  # +0.1 on both seeds
    assert same.low == pytest.approx(same.high) and verdict(same).endswith("no interval")


def test_aggregate_matches_a_hand_computation(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path, seeds=[0, 1, 2]))
    values = {"a": [0.5, 0.6, 0.7], "b": [0.7, 0.7, 1.0]}
    results = []
    for variant, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            rows = [{"set": "collection", "category": "bird", "model": "selftrained-bird",
                     "item": f"img{i}", "fscore@0.05": 0.3 + 0.01 * i
                     + (0.1 + 0.01 * (i % 2) if variant == "b" else 0.0),
                     "fscore@0.05_prior_frame": 0.4} for i in range(4)]
            rows.append({"set": "collection", "category": "bird", "model": "pretrained",
                         "item": "img0", "fscore@0.05": 0.2})
            results.append(ChildResult(variant, seed, f"run-{variant}{seed}",
                                       {"selftrain-bird.pose_acc30": value}, rows))
    summary = aggregate(spec, results)
    cell = {(h["metric"], h["variant"]): h for h in summary.headline}
    b = cell[("selftrain-bird.pose_acc30", "b")]
    assert b["mean"] == pytest.approx(0.8) and b["n"] == 3
    assert b["hi"] - b["mean"] == pytest.approx(T_975_2 * math.sqrt(0.03) / math.sqrt(3))
    assert b["per_seed"] == {0: 0.7, 1: 0.7, 2: 1.0}
    diff = {(d["metric"], d["variant"]): d for d in summary.differences}
    per_seed = diff[("selftrain-bird.pose_acc30", "b")]  # 0.2, 0.1, 0.3
    assert per_seed["mean"] == pytest.approx(0.2)
    assert per_seed["lo"] == pytest.approx(0.2 - T_975_2 * 0.1 / math.sqrt(3))
    items = diff[("collection/bird/selftrained-bird.fscore@0.05", "b")]
    # differences 0.10, 0.11, 0.10, 0.11 on every seed: mean 0.105, bootstrap inside them
    assert items["mean"] == pytest.approx(0.105)
    assert 0.1 - 1e-9 <= items["lo"] < items["mean"] < items["hi"] <= 0.11 + 1e-9
    assert items["verdict"] == "better" and items["n"] == 12
    # the frame check's reading is compared too: equal here, so level
    frame = diff[("collection/bird/selftrained-bird.fscore@0.05_prior_frame", "b")]
    assert frame["mean"] == pytest.approx(0.0) and frame["verdict"] == "level"
    assert not any("pretrained" in d["metric"] for d in summary.differences)
    table = markdown_table(summary)
    assert "| selftrain-bird.pose_acc30 | 0.600 [" in table and "better" in table


def test_each_learned_model_is_set_against_the_pretrained_model_within_each_variant(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path))
    results = []
    for variant in ("a", "b"):
        for seed in (0, 1):
            learned = [{"set": "collection", "category": "bird", "model": "selftrained-bird",
                        "item": f"img{i}", "fscore@0.05": 0.5 + 0.1 * seed,
                        "fscore@0.05_prior_frame": 0.3 + 0.01 * i} for i in range(3)]
            learned.append({"set": "collection", "category": "bird",  # no pre-trained twin
                            "model": "selftrained-bird", "item": "img9", "fscore@0.05": 0.9})
            pre = [{"set": "collection", "category": "bird", "model": "pretrained",
                    "item": f"img{i}", "fscore@0.05": 0.4} for i in range(4)]
            medoid = [{"set": "collection", "category": "bird", "model": "baseline: medoid",
                       "item": "img0", "fscore@0.05": 0.1}]
            results.append(ChildResult(variant, seed, f"run-{variant}{seed}", {},
                                       learned + pre + medoid))
    summary = aggregate(spec, results)
    got = {(e["metric"], e["variant"]): e for e in summary.against_pretrained}
    assert sorted(got) == [(f"collection/bird/selftrained-bird.{m}", v)
                           for m in ("fscore@0.05", "fscore@0.05_prior_frame")
                           for v in ("a", "b")]  # no baseline, no pre-trained row of its own
    aligned = got[("collection/bird/selftrained-bird.fscore@0.05", "a")]
    # 0.1 on every item of seed 0, 0.2 on seed 1: img9 has no pre-trained twin, left out
    assert aligned["mean"] == pytest.approx(0.15) and aligned["n"] == 6
    assert aligned["seeds"] == 2 and aligned["verdict"] == "better"
    # the prior-frame reading against the pre-trained model's own F@0.05: -0.10, -0.09, -0.08
    frame = got[("collection/bird/selftrained-bird.fscore@0.05_prior_frame", "b")]
    assert frame["mean"] == pytest.approx(-0.09)
    assert -0.1 - 1e-9 <= frame["lo"] < frame["mean"] < frame["hi"] <= -0.08 + 1e-9
    assert frame["verdict"] == "worse"
    header, rows = against_pretrained_rows(summary)
    assert header == ["learned model − pre-trained", "a", "b"]
    assert rows[0][0] == "collection/bird/selftrained-bird.fscore@0.05"
    assert rows[0][1].startswith("0.150 [") and rows[0][1].endswith("better")


def test_aggregate_reports_each_variants_minutes_lower_is_better(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path, seeds=[0, 1, 2]))
    minutes = {"a": [10.0, 11.0, 12.0], "b": [5.0, 5.5, 6.0]}
    results = [ChildResult(v, seed, f"run-{v}{seed}", {"m": 0.5}, [], seconds=60 * value)
               for v, per_seed in minutes.items() for seed, value in enumerate(per_seed)]
    results.append(ChildResult("b", 3, "run-b3", {"m": 0.5}))  # no wall time: left out
    summary = aggregate(spec, results)
    cell = {(h["metric"], h["variant"]): h for h in summary.headline}
    assert cell[("child.minutes", "a")]["mean"] == pytest.approx(11.0)
    assert cell[("child.minutes", "b")]["per_seed"] == {0: 5.0, 1: 5.5, 2: 6.0}
    diff = {(d["metric"], d["variant"]): d for d in summary.differences}
    faster = diff[("child.minutes", "b")]  # -5, -5.5, -6 minutes: fewer minutes are better
    assert faster["mean"] == pytest.approx(-5.5) and faster["verdict"] == "better"


def test_a_pretraining_sweep_compares_the_pretrained_model_pooled_seen_and_zero_shot(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ndata:\n  heldout_categories: [chair]\n")
    spec = load_sweep(_write_sweep(tmp_path, stages=["pretrain", "evaluate"], seeds=[0],
                                   variants={"a": {}, "b": {"pretrain.steps": 5}}))
    results = []
    for variant, lift in (("a", 0.0), ("b", 0.1)):
        rows = [{"set": "synthetic", "category": cat, "model": model, "item": f"m{i}",
                 "fscore@0.05": 0.2 + 0.01 * i + (lift if model == "pretrained" else 0.0)}
                for cat in ("car", "lamp", "chair") for i in range(3)
                for model in ("pretrained", "baseline: sphere")]
        results.append(ChildResult(variant, 0, f"run-{variant}", {}, rows))
    diff = {d["metric"]: d for d in aggregate(spec, results).differences}
    seen = diff["synthetic/seen/pretrained.fscore@0.05"]  # car and lamp: 6 items
    assert seen["mean"] == pytest.approx(0.1) and seen["n"] == 6
    assert diff["synthetic/zero-shot/pretrained.fscore@0.05"]["n"] == 3  # the chair
    assert "synthetic/chair/pretrained.fscore@0.05" in diff
    assert not any("baseline" in metric for metric in diff)


# ----------------------------------------------------------------------------------------------
# The sweep file
# ----------------------------------------------------------------------------------------------
def test_sweep_file_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(SweepError, match="sweep.yaml: stages"):
        load_sweep(_write_sweep(tmp_path, stages=["evaluate", "selftrain"]))
    with pytest.raises(SweepError, match="unknown key"):
        load_sweep(_write_sweep(tmp_path, grid={}))
    with pytest.raises(SweepError, match="baseline 'c' is not a variant"):
        load_sweep(_write_sweep(tmp_path, baseline="c"))
    with pytest.raises(SweepError, match="variant b: .*selftrain.nonsense"):
        load_sweep(_write_sweep(tmp_path, variants={"a": {}, "b": {"selftrain.nonsense": 1}}))
    with pytest.raises(SweepError, match="'seed' is set by the sweep"):
        load_sweep(_write_sweep(tmp_path, set={"seed": 3}))
    with pytest.raises(SweepError, match="seeds must be"):
        load_sweep(_write_sweep(tmp_path, seeds=[1, 1]))


def test_children_are_variant_major_with_their_own_outputs_and_keys(tmp_path):
    spec = load_sweep(_write_sweep(tmp_path))
    kids = children(spec, upstream=["r1"])
    assert [c.label for c in kids] == ["a-seed0", "a-seed1", "b-seed0", "b-seed1"]
    assert kids[2].overrides["selftrain.lr"] == 1e-4 and kids[3].overrides["seed"] == 1
    assert kids[0].overrides["output_dir"].endswith("sweeps/s/a-seed0")
    assert len({c.key for c in kids}) == 4
    assert [c.key for c in children(spec, upstream=["r1"])] == [c.key for c in kids]
    assert children(spec, upstream=["r2"])[0].key != kids[0].key  # new upstream: new children


def test_committed_sweeps_load():
    for path in sorted((REPO / "experiments" / "sweeps").glob("*.yaml")):
        spec = load_sweep(path)
        assert len(spec.seeds) >= 3 and spec.baseline in spec.variants, path.name


def test_slurm_lines_cover_every_child():
    array, report = slurm_commands("experiments/sweeps/phaseb_lr.yaml", 6)
    assert "--array=0-5" in array and array[-1] == "experiments/sweeps/phaseb_lr.yaml"
    assert report[1] == "--dependency=afterany:{job}" and report[-1] == "--report-only"
    assert (REPO / array[3]).is_file() and (REPO / report[2]).is_file()


# ----------------------------------------------------------------------------------------------
# The scope of a child's runs
# ----------------------------------------------------------------------------------------------
def test_a_childs_stage_runs_nest_under_it_and_upstream_stays_shared(mlflow_store, monkeypatch):
    cfg = load_config(None, {"name": "base"})
    with tracking.start_run(cfg, "pretrain") as pre:
        pass
    with tracking.start_run(cfg, "selftrain", category="bird"):
        pass
    base_selftrain = tracking.latest_run("base", "selftrain", category="bird")
    scope = tracking.SweepScope("base-sweep-x", "child-1", "selftrain")
    monkeypatch.setenv(tracking.SWEEP_ENV, scope.encode())
    assert tracking.latest_run("base", "pretrain").info.run_id == pre.info.run_id
    assert tracking.latest_run("base", "selftrain", category="bird") is None
    with tracking.start_run(cfg, "selftrain", category="bird") as mine:
        pass
    found = tracking.latest_run("base", "selftrain", category="bird")
    assert found.info.run_id == mine.info.run_id
    assert found.data.tags[tracking.TAG_PARENT] == "child-1"
    client = MlflowClient(mlflow_store)
    assert client.get_experiment(found.info.experiment_id).name == "base-sweep-x"
    monkeypatch.setenv(tracking.SWEEP_ENV, tracking.SweepScope(
        "base-sweep-x", "child-2", "selftrain").encode())
    assert tracking.latest_run("base", "selftrain-ablation", category="bird") is None
    assert tracking.latest_run("base", "selftrain", category="bird") is None
    monkeypatch.delenv(tracking.SWEEP_ENV)
    assert tracking.latest_run("base", "selftrain", category="bird").info.run_id == \
        base_selftrain.info.run_id  # the base experiment never sees a child's runs


# ----------------------------------------------------------------------------------------------
# A tiny sweep, end to end, through papermill
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_sweep_runs_children_skips_finished_ones_and_reports(tmp_path, mlflow_store,
                                                                   capsys):
    from ss3d.stages.data import render_stage
    from ss3d.stages.pretrain import pretrain_stage
    from ss3d.sweep import find_parent, run_sweep, upstream_runs
    from ss3d.sweep_report import collect, write_sweep_report

    cfg = load_config(None, {**SELF, "name": "tiny-sweep", "data.root": str(tmp_path / "data"),
                             "output_dir": str(tmp_path / "out"), "pretrain.steps": 3,
                             "pretrain.val_every": 3, "data.categories": ["car"],
                             "data.heldout_categories": []})
    (tmp_path / "base.yaml").write_text(dump_yaml(cfg))
    render_stage(cfg, progress=False)
    pretrain_stage(cfg, progress=False)
    path = _write_sweep(tmp_path, seeds=[0, 1], baseline="H3", variants={
        "H3": {"selftrain.hypotheses": 3}, "H1": {"selftrain.hypotheses": 1}}, set={
        "selftrain.ablation": False, "evaluate.synthetic": False,
        "evaluate.collection_images": 2, "evaluate.mesh_resolution": 16})
    spec = load_sweep(path)
    done = run_sweep(spec, jobs=2)  # two children at once, each in a spawned process
    assert sorted(done.ran) == ["H1-seed0", "H1-seed1", "H3-seed0", "H3-seed1"], done
    assert os.environ.get(tracking.SWEEP_ENV) is None
    client = MlflowClient(mlflow_store)
    sweep_exp = client.get_experiment_by_name("tiny-sweep-sweep-s")
    runs = client.search_runs([sweep_exp.experiment_id])
    parents = [r for r in runs if r.data.tags[tracking.TAG_STAGE] == "sweep"]
    kids = [r for r in runs if r.data.tags[tracking.TAG_STAGE] == "sweep-child"]
    assert len(parents) == 1 and len(kids) == 4
    assert parents[0].info.status == "FINISHED"
    assert {r.data.tags[tracking.TAG_PARENT] for r in kids} == {parents[0].info.run_id}
    for kid in kids:
        stages = [r for r in runs if r.data.tags.get(tracking.TAG_PARENT) == kid.info.run_id]
        assert sorted(r.info.run_name for r in stages) == ["evaluate", "selftrain-bird"]
        selftrain = next(r for r in stages if r.info.run_name == "selftrain-bird")
        assert selftrain.data.params["selftrain.hypotheses"] == \
            kid.data.tags["ss3d.sweep.variant"][1:]
        assert selftrain.data.params["seed"] == kid.data.tags["ss3d.sweep.seed"]
        assert kid.data.metrics["selftrain-bird.pose_acc30"] == \
            selftrain.data.metrics["headline.pose_acc30"]
    base_exp = client.get_experiment_by_name("tiny-sweep").experiment_id
    assert {r.data.tags[tracking.TAG_STAGE] for r in client.search_runs([base_exp])} == \
        {"render", "pretrain"}  # nothing of the children in the base experiment

    # a rerun skips every finished child; a failed one is run again (in this process)
    assert sorted(run_sweep(spec).skipped) == ["H1-seed0", "H1-seed1", "H3-seed0", "H3-seed1"]
    again = next(r for r in kids if r.info.run_name == "H1-seed1")
    client.set_terminated(again.info.run_id, "FAILED")
    rerun = run_sweep(spec)
    assert rerun.ran == ["H1-seed1"] and len(rerun.skipped) == 3
    assert len(client.search_runs([sweep_exp.experiment_id])) == len(runs) + 3
    # the same child in this process gives the same numbers as in a worker process
    from ss3d.sweep import finished_child

    child = next(c for c in children(spec, upstream_runs(spec)) if c.label == "H1-seed1")
    again_run = finished_child(find_parent(spec, upstream_runs(spec)), child)
    assert again_run.info.run_id != again.info.run_id
    assert again_run.data.metrics == again.data.metrics

    results, missing = collect(spec)
    assert not missing and len(results) == 4
    from ss3d.sweep_report import aggregate

    summary = aggregate(spec, results, missing)
    out = write_sweep_report(spec, summary, tmp_path / "report")
    for name in ("README.md", "index.html", "sweep.json", "seeds.png"):
        assert (out / name).is_file()
    readme = (out / "README.md").read_text()
    assert "H1 − H3" in readme and "## Against the pre-trained model" in readme
    assert "Against the pre-trained model" in (out / "index.html").read_text()
    parent = find_parent(spec, upstream_runs(spec))
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert "sweep/seeds.png" in names
    assert "children to run" in capsys.readouterr().out
