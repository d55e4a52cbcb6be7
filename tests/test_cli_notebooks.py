"""The CLI and the notebooks, run for real (papermill, pyrender, SQLite MLflow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import pytest
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.cli import main

from .conftest import REPO

TINY = ["--set", "data.models_per_category=2", "--set", "render.image_size=24",
        "--set", "render.views_per_model=2", "--set", "data.images_per_collection=4",
        "--set", "data.categories=car", "--set", "data.heldout_categories=chair",
        "--set", "render.surface_samples=64", "--set", "render.volume_samples=64",
        "--set", "data.collections=bird,airplane"]


def test_help_and_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "render" in capsys.readouterr().out
    assert main(["config", "--config", str(REPO / "experiments/smoke.yaml"),
                 "--set", "model.hidden=16"]) == 0
    assert "hidden: 16" in capsys.readouterr().out


def test_cli_reports_config_errors(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("render:\n  image_sise: 3\n")
    assert main(["config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "render.image_sise" in err and "bad.yaml" in err
    assert main(["ingest", "--config", str(REPO / "experiments/smoke.yaml")]) == 2
    assert "exactly one source" in capsys.readouterr().err


def test_cli_render_prints_throughput_and_logs_run(tmp_path, mlflow_store, capsys):
    args = ["render", "--config", str(REPO / "experiments/smoke.yaml"),
            "--set", f"data.root={tmp_path / 'data'}", *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "views/s" in out and "collection bird: 4 images" in out
    run = tracking.latest_run("smoke", "render")
    assert run is not None
    client = MlflowClient(mlflow_store)
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/render_grid.png", "figures/collection_bird.png"} <= figures
    assert run.data.metrics["models.car"] == 2
    # a rerun reuses everything: no new views rendered
    assert main(args) == 0
    assert "views/s" not in capsys.readouterr().out


def test_cli_sharded_render_then_merge(tmp_path, mlflow_store, capsys):
    base = ["render", "--config", str(REPO / "experiments/smoke.yaml"),
            "--set", f"data.root={tmp_path / 'data'}", *TINY, "--no-collections"]
    assert main([*base, "--shard", "0/2"]) == 0
    assert main([*base, "--shard", "1/2"]) == 0
    assert not (tmp_path / "data" / "renders.h5").exists()
    assert main([*base, "--merge"]) == 0
    with h5py.File(tmp_path / "data" / "renders.h5", "r") as f:
        assert f.attrs["complete_models"] == 4 and f.attrs["shards"] == 2


@pytest.mark.slow
def test_render_notebook_through_papermill_cli(tmp_path):
    """`papermill notebooks/00_render.ipynb out.ipynb -f experiments/smoke.yaml` (tiny -p)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks/00_render.ipynb"), str(out),
           "-f", str(REPO / "experiments/smoke.yaml"), "-p", "models_per_category", "2",
           "-p", "image_size", "24", "-p", "views", "2", "-p", "categories", "car,laptop",
           "-p", "output", str(tmp_path / "data"), "-p", "progress", "False",
           "-y", "data: {images_per_collection: 4, heldout_categories: [chair], "
           "collections: [bird, airplane]}",
           "--cwd", str(REPO)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # figures shown inline
    with h5py.File(tmp_path / "data" / "renders.h5", "r") as f:
        assert sorted(set(f["category"].asstr()[:])) == ["car", "chair", "laptop"]
        assert f["rgb"].shape[1:] == (2, 24, 24, 3)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["render.image_size"] == "24"


def test_the_default_config_is_found_from_any_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository, no --config
    assert main(["config", "--set", "model.hidden=16"]) == 0
    out = capsys.readouterr().out
    assert "name: smoke" in out and "hidden: 16" in out


def test_unforeseen_errors_are_one_line_and_verbose_shows_the_traceback(capsys, monkeypatch):
    import ss3d.cli

    def broken(cfg):
        raise KeyError("some.key")

    monkeypatch.setattr(ss3d.cli, "dump_yaml", broken)  # what `ss3d config` calls
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "ss3d: error: KeyError: 'some.key' (run with -v for the traceback)"]
    assert main(["-v", "config"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_other_packages_warnings_and_long_messages_show_only_with_verbose(capsys, monkeypatch,
                                                                        recwarn):
    import warnings

    import ss3d.cli

    def noisy(cfg):  # defined here: to the warnings filter, a module other than ss3d's
        warnings.warn("a third-party warning", UserWarning, stacklevel=1)
        raise RuntimeError("first line\n" + "detail\n" * 90)

    monkeypatch.setattr(ss3d.cli, "dump_yaml", noisy)
    assert main(["-v", "config"]) == 1  # everything, as it came
    assert capsys.readouterr().err.count("detail") >= 90
    assert [str(w.message) for w in recwarn] == ["a third-party warning"]
    recwarn.clear()
    assert main(["config"]) == 1  # one line, no warning
    assert capsys.readouterr().err == ("ss3d: error: RuntimeError: first line [...] (run with "
                                       "-v for the traceback)\n")
    assert len(recwarn) == 0


@pytest.mark.slow
def test_a_failing_notebook_is_named_with_its_cell(tmp_path, mlflow_store):
    """(An empty store of its own: the repository's could hold a render run to find.)"""
    from ss3d.notebooks import NotebookError, execute

    out = tmp_path / "failed.ipynb"
    with pytest.raises(NotebookError) as info:
        execute("01_pretrain", out, {"overrides": {"data.root": str(tmp_path / "none")},
                                     "progress": False})
    message = str(info.value)
    assert message.startswith("01_pretrain.ipynb: cell ") and "FileNotFoundError" in message
    assert "\n" not in message and str(out) in message and out.is_file()


def test_pipeline_estimates_what_remains_from_the_last_run(tmp_path, monkeypatch):
    from ss3d import pipeline

    monkeypatch.setattr(pipeline.tracking, "repo_root", lambda: tmp_path)
    assert pipeline._previous_timings("x", tmp_path / "out") == {}
    (tmp_path / "reports" / "x").mkdir(parents=True)
    (tmp_path / "reports" / "x" / "timings.json").write_text(
        json.dumps({"00_render": 60, "01_pretrain": 125.4}))
    previous = pipeline._previous_timings("x", tmp_path / "out")
    assert pipeline._estimate(previous, ["00_render", "01_pretrain", "04_evaluate"]) == \
        "; about 3:05 left (the last run's times)"
    assert pipeline._estimate(previous, ["04_evaluate"]) == ""
    (tmp_path / "reports" / "x" / "timings.json").write_text("[not, a, mapping]")
    assert pipeline._previous_timings("x", tmp_path / "out") == {}


@pytest.mark.slow
def test_two_renders_into_one_root_end_with_one_intact_result(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "ss3d.cli", "render", "--config",
           str(REPO / "experiments/smoke.yaml"), "--set", f"data.root={tmp_path / 'data'}",
           *TINY, "--set", "data.models_per_category=4"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [o[1][-2000:] for o in outputs]
    stderr = "".join(err for _, err in outputs)
    assert "unreadable" not in stderr and "delete it" not in stderr
    with h5py.File(tmp_path / "data" / "renders.h5", "r") as f:
        assert f.attrs["complete_models"] == 8  # 4 cars + 4 held-out chairs
    data = tmp_path / "data"
    assert not list(data.rglob("*.tmp")) and not list(data.glob("renders.shard-*"))
    with h5py.File(data / "collections" / "bird.h5", "r") as f:
        assert f["images"].shape[0] == 4


def test_papermill_reads_every_parameter_of_every_notebook():
    """papermill's parser skips a line it cannot read (an `=` in the comment is enough) and
    then warns "Passed unknown parameter" for a value the notebook does take."""
    import nbformat
    from papermill.translators import PythonTranslator

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cell = next(c for c in nbformat.read(path, as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        parsed = {p.name for p in PythonTranslator.inspect(cell)}
        declared = {line.split(":")[0].split("=")[0].strip()
                    for line in cell.source.splitlines()
                    if line.strip() and not line.startswith("#")}
        assert parsed == declared, (path.name, declared - parsed)


def test_pipeline_shows_notebook_output_without_papermills_bookkeeping():
    import logging

    from ss3d.pipeline import NotebookOutput

    keep = NotebookOutput()

    def shown(message: str) -> str | None:
        record = logging.LogRecord("papermill", logging.INFO, __file__, 1, message, None, None)
        return record.getMessage() if keep.filter(record) else None

    assert shown("Executing Cell 5---------------------------------------") is None
    assert shown("Ending Cell 4------------------------------------------") is None
    assert shown("\n") is None
    assert shown("pretrain:  40%|####      | 120/300 [00:50<01:15]\r") == \
        "    pretrain:  40%|####      | 120/300 [00:50<01:15]"
    assert shown("step 100: held-out mask IoU 0.61\nstep 200: 0.66\n") == \
        "    step 100: held-out mask IoU 0.61\n    step 200: 0.66"


@pytest.mark.slow
def test_pipeline_runs_every_notebook_with_the_overrides_it_was_given(tmp_path, mlflow_store,
                                                                      capsys):
    """What `make smoke` runs, at tiny size. Every override must reach every notebook: the
    notebooks' own parameters (image_size, categories, steps, ...) left unset used to erase
    the pipeline's values for the same keys."""
    from ss3d.pipeline import run_pipeline

    overrides = {
        "name": "tiny-pipeline", "data.root": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "out"), "data.categories": ["car"],
        "data.heldout_categories": ["chair"], "data.models_per_category": 3,
        "render.image_size": 24, "render.views_per_model": 2, "render.surface_samples": 64,
        "render.volume_samples": 64, "data.images_per_collection": 8,
        "data.collection_instances": 4, "data.collection_image_size": 48,
        "data.crop_size": 24, "pretrain.steps": 4, "pretrain.val_every": 2,
        "selftrain.epochs": 2, "selftrain.phase_a_epochs": 1, "selftrain.camera_steps": 1,
        "selftrain.hypotheses": 2, "distill.steps": 2, "evaluate.models_per_category": 1,
        "evaluate.collection_images": 2, "evaluate.mesh_resolution": 16}
    timings = run_pipeline(REPO / "experiments/smoke.yaml", overrides=overrides,
                           report_dir=tmp_path / "report")
    assert list(timings) == ["00_render", "01_pretrain", "02_selftrain_bird",
                             "02_selftrain_quadruped", "02_selftrain_airplane", "03_distill",
                             "04_evaluate"]
    with h5py.File(tmp_path / "data" / "renders.h5", "r") as f:
        assert f["rgb"].shape[2:4] == (24, 24)
        assert set(f["category"].asstr()[:]) == {"car", "chair"}
    runs = MlflowClient(mlflow_store).search_runs(
        [MlflowClient(mlflow_store).get_experiment_by_name("tiny-pipeline").experiment_id])
    pretrain = next(r for r in runs if r.data.tags["ss3d.stage"] == "pretrain")
    assert pretrain.data.params["pretrain.steps"] == "4"
    assert pretrain.data.tags["mlflow.source.name"] == "notebooks/01_pretrain.ipynb"
    assert (tmp_path / "report" / "index.html").is_file()
    assert set(json.loads((tmp_path / "report" / "timings.json").read_text())) == set(timings)
    out = capsys.readouterr().out
    assert "[1/7] 00_render: starting at 0:00" in out and "[7/7] 04_evaluate: done in" in out
    assert "Executing Cell" not in out


@pytest.mark.slow
def test_make_lab_serves_the_notebooks_as_root_without_a_browser(tmp_path):
    """``make lab`` on a chosen port answers over HTTP (here as whoever runs the tests: root in
    containers and CI, where jupyter refuses to start without --allow-root)."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:  # a free port on the loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_PORT={port}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline, answer = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status",
                                            timeout=2) as response:
                    answer = response.status
                    break
            except urllib.error.HTTPError as err:  # up, and asking for the token
                answer = err.code
                break
            except OSError:  # not listening yet
                time.sleep(1)
        output = "" if proc.poll() is None else proc.stdout.read().decode()[-2000:]
        assert answer in (200, 401, 403), output
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
