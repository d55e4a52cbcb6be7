"""Tracking helpers against a real SQLite MLflow store in a temp dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pytest  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ss3d import tracking  # noqa: E402
from ss3d.config import load_config  # noqa: E402


def test_default_uri_is_repo_sqlite(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.tracking_uri()
    assert uri.startswith("sqlite:///") and uri.endswith("/mlflow.db")
    assert str(tracking.repo_root()) in uri


def test_runs_params_tags_artifacts_and_lineage(mlflow_store, tmp_path):
    cfg = load_config(None, {"name": "unit", "model.hidden": 16})
    with tracking.start_run(cfg, "pretrain") as run:
        mlflow.log_metric("loss", 1.0, step=0)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        tracking.log_figure(fig, "curve")
        ckpt = tmp_path / "last.pt"
        ckpt.write_bytes(b"x" * 10)
        tracking.log_checkpoint(ckpt)
        with pytest.raises(FileNotFoundError, match="missing.txt"):
            tracking.log_artifact(tmp_path / "missing.txt")
    pre_id = run.info.run_id
    with tracking.start_run(cfg, "selftrain", category="bird", consumed=[pre_id]) as run2:
        pass

    client = MlflowClient(mlflow_store)
    stored = client.get_run(pre_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["model.hidden"] == "16"
    assert stored.data.tags[tracking.TAG_STAGE] == "pretrain"
    assert stored.data.tags[tracking.TAG_EXPERIMENT] == "unit"
    # the git tags' values: tests/test_git_state.py, in repositories of known state
    artifacts = {a.path for a in client.list_artifacts(pre_id, "figures")}
    assert artifacts == {"figures/curve.png"}
    assert tracking.artifact_path(pre_id, "checkpoints/last.pt").read_bytes() == b"x" * 10
    assert client.get_run(run2.info.run_id).data.tags[tracking.TAG_CONSUMED] == pre_id
    # a stage logs its own config sections only, and names where it ran from
    assert "pretrain.steps" in stored.data.params and "seed" in stored.data.params
    assert not any(k.startswith(("selftrain.", "distill.", "evaluate."))
                   for k in stored.data.params)
    bird = client.get_run(run2.info.run_id).data
    assert "selftrain.hypotheses" in bird.params and "pretrain.steps" not in bird.params
    assert stored.data.tags["mlflow.source.name"] not in ("", "ipykernel_launcher.py")
    assert pre_id in bird.tags["mlflow.note.content"]
    experiment = client.get_experiment_by_name("unit")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    found = tracking.latest_run("unit", "pretrain")
    assert found is not None and found.info.run_id == pre_id
    assert tracking.latest_run("unit", "selftrain", category="bird").info.run_id == \
        run2.info.run_id
    assert tracking.latest_run("unit", "selftrain", category="car") is None
    assert tracking.latest_run("no-such-experiment", "pretrain") is None


def test_a_notebook_run_names_the_notebook_as_its_source(mlflow_store, monkeypatch):
    monkeypatch.setenv(tracking.SOURCE_ENV, "notebooks/01_pretrain.ipynb")
    with tracking.start_run(load_config(None, {"name": "unit4"}), "pretrain") as run:
        pass
    tags = MlflowClient(mlflow_store).get_run(run.info.run_id).data.tags
    assert tags["mlflow.source.name"] == "notebooks/01_pretrain.ipynb"
    assert tags["mlflow.source.type"] == "NOTEBOOK"


def test_failed_run_is_not_latest_and_resume_continues(mlflow_store):
    cfg = load_config(None, {"name": "unit2"})
    with tracking.start_run(cfg, "pretrain") as run:
        mlflow.log_metric("loss", 3.0, step=0)
    good = run.info.run_id
    with pytest.raises(RuntimeError):
        with tracking.start_run(cfg, "pretrain"):
            raise RuntimeError("boom")
    assert tracking.latest_run("unit2", "pretrain").info.run_id == good
    # resume continues the same run: metrics accumulate, params are not re-logged
    with tracking.start_run(cfg, "pretrain", run_id=good):
        mlflow.log_metric("loss", 2.0, step=1)
    history = MlflowClient(mlflow_store).get_metric_history(good, "loss")
    assert [m.step for m in history] == [0, 1]


def test_a_resumed_run_never_logs_a_step_twice(mlflow_store):
    cfg = load_config(None, {"name": "unit3"})
    # a run killed after logging steps 1..5, whose last checkpoint was at step 3
    with tracking.start_run(cfg, "pretrain") as run:
        for step in range(1, 6):
            tracking.log_metrics({"loss": 1.0 / step}, step=step)
    with tracking.start_run(cfg, "pretrain", run_id=run.info.run_id):
        for step in range(4, 9):  # the resume repeats steps 4 and 5
            tracking.log_metrics({"loss": 1.0 / step, "lr": 0.1}, step=step)
    client = MlflowClient(mlflow_store)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == \
        [1, 2, 3, 4, 5, 6, 7, 8]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "lr")] == \
        [4, 5, 6, 7, 8]  # a key the interrupted run never logged is logged from the start
    # outside a resumed run nothing is filtered
    with tracking.start_run(cfg, "pretrain") as fresh:
        tracking.log_metrics({"loss": 1.0}, step=1)
        tracking.log_metrics({"loss": 0.5}, step=1)
    assert len(client.get_metric_history(fresh.info.run_id, "loss")) == 2


def test_the_config_decides_the_data_root_and_lineage_follows_it(tmp_path, mlflow_store):
    """After rendering into another root, a stage reads its own config's root (with the render
    run that wrote it as lineage); with that root empty it stops and names both roots."""
    from ss3d.stages.data import find_renders
    from ss3d.stages.pretrain import pretrain_stage

    roots = {key: tmp_path / key for key in "ab"}
    cfgs = {key: load_config(None, {"name": "roots", "data.root": str(root),
                                    "output_dir": str(tmp_path / "out")})
            for key, root in roots.items()}
    made = {}
    for key, root in roots.items():  # render into a, then into b (the latest)
        root.mkdir()
        (root / "renders.h5").write_bytes(b"")
        with tracking.start_run(cfgs[key], "render") as run:
            mlflow.set_tag("ss3d.data_root", str(root))
        made[key] = run.info.run_id
    assert find_renders(cfgs["a"]) == (roots["a"] / "renders.h5", made["a"])
    assert find_renders(cfgs["b"]) == (roots["b"] / "renders.h5", made["b"])
    (roots["a"] / "renders.h5").unlink()
    for attempt in (lambda: find_renders(cfgs["a"]),
                    lambda: pretrain_stage(cfgs["a"], progress=False)):
        with pytest.raises(FileNotFoundError) as err:
            attempt()
        assert str(roots["a"] / "renders.h5") in str(err.value)
        assert f"rendered into {roots['b']}" in str(err.value)
    assert not (tmp_path / "out").exists()


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_tracking_server_fails_within_seconds_in_one_line(tmp_path, monkeypatch,
                                                                 capfd):
    import time

    from ss3d.cli import main

    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for key in tracking.HTTP_DEFAULTS:  # MLflow's own defaults: 7 retries, over 4 minutes
        monkeypatch.delenv(key, raising=False)
    start = time.monotonic()
    with pytest.raises(tracking.TrackingError) as err:
        tracking.latest_run("dead", "render")
    assert time.monotonic() - start < 30
    assert str(err.value).startswith(f"the MLflow tracking server {uri} is unreachable "
                                     "(connection refused)")
    capfd.readouterr()
    start = time.monotonic()
    assert main(["pretrain", "--set", f"data.root={tmp_path}",
                 "--set", f"output_dir={tmp_path}"]) == 2
    assert time.monotonic() - start < 30
    out = capfd.readouterr()
    assert out.err == f"ss3d: error: {err.value}\n", out.err  # nothing else: no retry lines


@contextlib.contextmanager
def _read_only(path):
    """``path`` (a file) cannot be written: by mode for a user, immutable for root (whom modes
    do not stop)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
            path.chmod(0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root needs chattr +i on this file system to make a file read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_store_fails_in_one_line_naming_it(tmp_path, mlflow_store, capfd):
    from ss3d.cli import main

    cfg = load_config(None, {"name": "ro"})
    tracking.configure(cfg.name)  # the store and the experiment exist
    capfd.readouterr()
    with _read_only(tmp_path / "mlflow.db"):
        code = main(["render", "--set", "name=ro", "--set", f"data.root={tmp_path / 'd'}"])
    err = capfd.readouterr().err
    assert code == 2 and err.count("\n") == 1, err  # no logged SQL traceback before it
    assert err.startswith(f"ss3d: error: the MLflow store {mlflow_store} is read-only (")
    assert err.endswith("): make it writable, or point MLFLOW_TRACKING_URI at a writable "
                        "store\n")
