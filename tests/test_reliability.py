"""Reliability IV (issue 46): an output flag never destroys what it points at, concurrent and
killed runs leave a true history, every stage checks the data it reads, resume and config
refuse what cannot work, before anything is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from ss3d.config import load_config
from ss3d.engine import save_checkpoint
from ss3d.files import _host, replacing_dir

from .conftest import REPO


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------------------------
# 1. -o never deletes or renames a user's files
# ----------------------------------------------------------------------------------------------
def test_an_output_folder_of_the_users_is_refused_and_left_as_it_was(tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not written by ss3d.*chapter1.tex"), \
            replacing_dir(thesis) as tmp:
        (tmp / "index.html").write_text("report")
    assert [p.name for p in thesis.iterdir()] == ["chapter1.tex"]
    assert (thesis / "chapter1.tex").read_text() == "years of work"
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]  # no temp folder left

    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(ValueError, match="it is a file"), replacing_dir(notes):
        pass
    assert notes.read_text() == "keep me" and not (tmp_path / ".notes.txt.old").exists()


def test_a_report_folder_is_created_then_replaced_by_the_next_report_only(tmp_path):
    out = tmp_path / "report"
    with replacing_dir(out) as tmp:
        (tmp / "index.html").write_text("one")
        (tmp / "figures").mkdir()
    marker = json.loads((out / ".ss3d-output").read_text())
    assert marker["entries"] == ["figures", "index.html"]
    with replacing_dir(out) as tmp:  # its own earlier report: replaced whole
        (tmp / "index.html").write_text("two")
    assert (out / "index.html").read_text() == "two" and not (out / "figures").exists()
    (out / "my-notes.md").write_text("mine")  # a user's file in the report folder
    with pytest.raises(ValueError, match="my-notes.md"), replacing_dir(out) as tmp:
        (tmp / "index.html").write_text("three")
    assert (out / "my-notes.md").read_text() == "mine"
    assert (out / "index.html").read_text() == "two"
    empty = tmp_path / "empty"
    empty.mkdir()
    with replacing_dir(empty) as tmp:  # an empty folder the user made holds nothing to lose
        (tmp / "index.html").write_text("x")
    assert (empty / "index.html").is_file()


def test_the_committed_report_folders_are_recognised_as_reports():
    from ss3d.files import _output_problem

    for folder in [REPO / "reports" / "smoke", *(REPO / "reports" / "sweeps").iterdir()]:
        if folder.is_dir():
            assert _output_problem(folder) is None, folder


# ----------------------------------------------------------------------------------------------
# 2. one run per experiment and training stage; temp files of live writers are theirs
# ----------------------------------------------------------------------------------------------
def _shell_cfg(tmp_path):
    return load_config(None, {"name": "locked", "output_dir": str(tmp_path / "out"),
                              "data.root": str(tmp_path / "data")})


def test_a_second_run_of_one_experiment_and_stage_is_refused_at_once_naming_the_holder(
        tmp_path):
    from ss3d.stages.shell import StageRun

    cfg = _shell_cfg(tmp_path)
    out = tmp_path / "out" / "locked" / "pretrain"
    lock = out.parent / ".pretrain.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom ss3d.data.locks import exclusive\n"
         "with exclusive(sys.argv[1], 'x'):\n    print('held', flush=True)\n"
         "    time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        second = StageRun(cfg, "pretrain", out_dir=out, track=False)
        with pytest.raises(RuntimeError, match=rf"pretrain of experiment 'locked'.*pid "
                                              rf"{holder.pid} on"):  # LockedError
            second.resume(False, None, model=None)  # the first thing a training stage does
        with pytest.raises(RuntimeError, match="already running"), second.open():
            pass
        assert time.perf_counter() - start < 5
        assert not out.exists()  # refused before anything was written
        # another stage of the experiment runs meanwhile
        with StageRun(cfg, "distill", out_dir=out.parent / "distill", track=False).open():
            pass
    finally:
        holder.kill()
        holder.wait()
    run = StageRun(cfg, "pretrain", out_dir=out, track=False)  # its process is gone: free
    run.resume(False, None, model=None)
    again = StageRun(cfg, "pretrain", out_dir=out, track=False)  # this process: taken over
    with again.open():
        pass
    del run
    with StageRun(cfg, "pretrain", out_dir=out, track=False).open():
        pass


def test_a_checkpoint_save_removes_only_temp_files_of_dead_writers(tmp_path):
    path = tmp_path / "last.pt"
    live = tmp_path / f".last.pt.{_host()}-{os.getppid()}.abc_12.tmp"  # a live writer's
    dead = tmp_path / f".last.pt.{_host()}-{_dead_pid()}.xyz_34.tmp"
    remote = tmp_path / ".last.pt.otherhost-1.qqq.tmp"  # another host's: cannot be checked
    for p in (live, dead, remote):
        p.write_bytes(b"\0" * 100)
    save_checkpoint(path, stage="pretrain", step=1, config={}, model=torch.nn.Linear(2, 2))
    assert live.exists() and remote.exists() and not dead.exists() and path.is_file()


# ----------------------------------------------------------------------------------------------
# 5. resume checks the checkpoint against the config before touching anything
# ----------------------------------------------------------------------------------------------
class _State:
    step = 0

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _saved_run(tmp_path, net, step=5, **overrides):
    from ss3d.config import to_dict

    cfg = load_config(None, {"name": "resumed", "output_dir": str(tmp_path / "out"),
                             "pretrain.steps": 10, **overrides})
    out = tmp_path / "out" / "resumed" / "pretrain"
    save_checkpoint(out / "last.pt", stage="pretrain", step=step, config=to_dict(cfg),
                    model=net)
    return out


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pretrain.steps": 3}, r"at step 5, past pretrain.steps=3"),
    ({"name": "other"}, r"a checkpoint of experiment 'resumed', not of 'other'"),
])
def test_resume_refuses_a_checkpoint_that_contradicts_the_config_before_loading(
        tmp_path, overrides, message):
    from ss3d.stages.shell import StageRun

    net = torch.nn.Linear(3, 3)
    out = _saved_run(tmp_path, net)
    before = (out / "last.pt").read_bytes()
    fresh = torch.nn.Linear(3, 3)
    weights = fresh.weight.clone()
    cfg = load_config(None, {"name": "resumed", "output_dir": str(tmp_path / "out"),
                             "pretrain.steps": 10, **overrides})
    run = StageRun(cfg, "pretrain", out_dir=out, track=False)
    with pytest.raises(ValueError, match=message):  # CheckpointError, one line
        run.resume(True, _State(), model=fresh)
    assert torch.equal(fresh.weight, weights) and (out / "last.pt").read_bytes() == before


def test_resume_with_another_architecture_names_the_config_keys_that_differ(tmp_path):
    from ss3d.config import to_dict
    from ss3d.engine import load_checkpoint

    cfg = load_config(None, {"model.hidden": 64})
    path = save_checkpoint(tmp_path / "last.pt", stage="pretrain", step=1,
                           config=to_dict(cfg), model=torch.nn.Linear(64, 64))
    changed = to_dict(load_config(None, {"model.hidden": 128}))
    with pytest.raises(ValueError, match=r"does not fit.*model.hidden: 64 -> 128") as err:
        load_checkpoint(path, model=torch.nn.Linear(128, 128), stage="pretrain",
                        config=changed)
    assert "\n" not in str(err.value) and "state_dict" not in str(err.value)


# ----------------------------------------------------------------------------------------------
# 6. values that would fail late are refused up front, with the bound and the reason
# ----------------------------------------------------------------------------------------------
def test_config_refuses_values_that_would_fail_late(tmp_path):
    from ss3d.config import ConfigError

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for overrides, message in [
        ({"seed": 10**20}, r"seed: .* must be <= 4294967295: seeds reach NumPy"),
        ({"data.root": str(a_file)}, r"data.root: .* is a file"),
        ({"data.root": str(a_file / "sub")}, r"data.root: .* lies under a file"),
        ({"output_dir": str(a_file)}, r"output_dir: .* is a file"),
        ({"output_dir": str(tmp_path / ("x" * 300))}, r"output_dir: .* name of 300 bytes"),
        ({"render.image_size": 4096}, r"render.image_size: .* must be <= 1024: each view"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides)
    load_config(None, {"output_dir": str(tmp_path / "new" / "folder"), "seed": 2**32 - 1})


# ----------------------------------------------------------------------------------------------
# 4. every stage checks the generator version and format of the data it reads
# ----------------------------------------------------------------------------------------------
def _stale_renders(path, **attrs):
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "ss3d-render", "version": 1, "source": "procedural-v1",
                        "complete_models": 0, "image_size": 64, "views_per_model": 6,
                        **attrs})
        for name in ("rgb", "mask", "azimuth", "elevation", "distance", "model_id",
                     "category", "split"):
            f.create_dataset(name, data=[])


def test_pretraining_refuses_renders_of_an_older_procedural_generator(tmp_path):
    from ss3d.data.h5 import H5FormatError
    from ss3d.stages.pretrain import pretrain_stage

    renders = tmp_path / "data" / "renders.h5"
    _stale_renders(renders)
    cfg = load_config(None, {"name": "stale", "data.root": str(tmp_path / "data"),
                             "output_dir": str(tmp_path / "out")})
    with pytest.raises(H5FormatError, match=r"procedural generator version 1 .* this ss3d "
                                            r"generates version \d"):
        pretrain_stage(cfg, progress=False, track=False)
    _stale_renders(renders, source="procedural-v2", version=7)
    with pytest.raises(H5FormatError, match="ss3d-render version 7, newer than this ss3d"):
        pretrain_stage(cfg, progress=False, track=False)


# ----------------------------------------------------------------------------------------------
# 3. runs left RUNNING by dead processes are closed KILLED by the next run that meets them
# ----------------------------------------------------------------------------------------------
def _running(client, experiment_id, pid, **tags):
    import socket

    run = client.create_run(experiment_id, tags={"ss3d.host": socket.gethostname(),
                                                 "ss3d.pid": str(pid), **tags})
    return run.info.run_id


def test_a_run_of_a_dead_process_is_closed_killed_by_the_next_run(mlflow_store):
    from mlflow.tracking import MlflowClient

    from ss3d import tracking

    cfg = load_config(None, {"name": "killed"})
    with tracking.start_run(cfg, "render") as first:
        tags = MlflowClient(mlflow_store).get_run(first.info.run_id).data.tags
    assert tags["ss3d.pid"] == str(os.getpid()) and tags["ss3d.host"]
    client = MlflowClient(mlflow_store)
    experiment_id = first.info.experiment_id
    dead = _running(client, experiment_id, _dead_pid(), **{"ss3d.stage": "pretrain"})
    live = _running(client, experiment_id, os.getppid())
    remote = client.create_run(experiment_id, tags={"ss3d.host": "elsewhere",
                                                    "ss3d.pid": "1"}).info.run_id
    finished = client.get_run(first.info.run_id).info
    with tracking.start_run(cfg, "pretrain"):
        pass
    assert client.get_run(dead).info.status == "KILLED"
    assert "was gone" in client.get_run(dead).data.tags["ss3d.closed_because"]
    assert client.get_run(live).info.status == "RUNNING"
    assert client.get_run(remote).info.status == "RUNNING"  # cannot be checked from here
    after = client.get_run(first.info.run_id).info
    assert (after.status, after.end_time) == (finished.status, finished.end_time)


def test_a_sweep_never_starts_a_second_child_with_one_key(tmp_path, mlflow_store, capsys):
    from mlflow.tracking import MlflowClient

    from ss3d import sweep as sweeps
    from ss3d.sweep import children, load_sweep

    base = tmp_path / "base.yaml"
    base.write_text("name: base\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\nexperiment: base.yaml\nstages: [selftrain, evaluate]\nseeds: [0]\n"
        "variants: {a: {}, b: {selftrain.lr: 1.0e-4}, c: {selftrain.lr: 1.0e-3}}\n")
    spec = load_sweep(tmp_path / "s.yaml")
    parent = sweeps.find_parent(spec, [], create=True)
    kids = children(spec, [])
    client = MlflowClient(mlflow_store)
    child_tags = {"mlflow.parentRunId": parent.info.run_id}
    killed = _running(client, parent.info.experiment_id, _dead_pid(),
                      **child_tags, **{"ss3d.sweep.key": kids[0].key})
    alive = _running(client, parent.info.experiment_id, os.getppid(),
                     **child_tags, **{"ss3d.sweep.key": kids[1].key})
    result = sweeps.SweepRun(parent)
    todo = sweeps.pending_children(parent, kids, None, result)
    assert [c.label for c in todo] == ["a-seed0", "c-seed0"]
    assert result.running == ["b-seed0"] and "not started again" in capsys.readouterr().out
    assert client.get_run(killed).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


# ----------------------------------------------------------------------------------------------
# 7. small silent acceptances
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["banana", "2", "maybe"])
def test_an_unknown_cpu_amp_setting_is_refused(monkeypatch, value):
    from ss3d.engine import cpu_bf16_supported

    monkeypatch.setenv("SS3D_CPU_AMP", value)
    cpu_bf16_supported.cache_clear()
    try:
        with pytest.raises(ValueError, match=rf"SS3D_CPU_AMP='{value}': use 1 .* or 0"):
            cpu_bf16_supported()
        for on, expected in (("1", True), ("yes", True), ("0", False), ("off", False)):
            monkeypatch.setenv("SS3D_CPU_AMP", on)
            cpu_bf16_supported.cache_clear()
            assert cpu_bf16_supported() is expected
    finally:
        monkeypatch.delenv("SS3D_CPU_AMP")
        cpu_bf16_supported.cache_clear()


def test_an_unknown_malloc_setting_is_warned_about(monkeypatch):
    from ss3d.allocator import keep_large_blocks

    monkeypatch.setenv("SS3D_MALLOC", "banana")
    with pytest.warns(UserWarning, match="SS3D_MALLOC='banana' is not a setting"):
        keep_large_blocks()


@pytest.mark.parametrize("jobs", ["0", "-2", "x"])
def test_sweep_jobs_below_one_are_refused_by_the_parser(jobs, capsys):
    from ss3d.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["sweep", "s.yaml", "-j", jobs])
    assert exit_.value.code == 2 and "--jobs/-j" in capsys.readouterr().err


def test_an_empty_sweep_report_is_an_error(tmp_path, mlflow_store, capsys):
    from ss3d.cli import main

    (tmp_path / "base.yaml").write_text("name: base\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\nexperiment: base.yaml\nstages: [pretrain]\nseeds: [0]\nvariants: {a: {}}\n")
    out = tmp_path / "report"
    assert main(["sweep", str(tmp_path / "s.yaml"), "--report-only", "-o", str(out)]) == 2
    assert "no finished child to report on" in capsys.readouterr().err
    assert not out.exists()


def test_the_slurm_follow_up_line_expands_the_job_id(tmp_path, mlflow_store, monkeypatch):
    import shutil

    from ss3d import sweep as sweeps

    (tmp_path / "base.yaml").write_text("name: base\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\nexperiment: base.yaml\nstages: [pretrain]\nseeds: [0]\nvariants: {a: {}}\n")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(sweeps.SweepError) as err:
        sweeps.submit_slurm(sweeps.load_sweep(tmp_path / "s.yaml"), "s.yaml")
    follow_up = str(err.value).splitlines()[-1].strip()
    out = subprocess.run(["bash", "-c", f"JOB=123; set -- {follow_up}; echo \"$2\""],
                         capture_output=True, text=True).stdout.strip()
    assert out == "--dependency=afterany:123", follow_up


def test_an_ingest_box_past_the_image_is_named_as_such(tmp_path):
    import cv2
    import numpy as np

    from ss3d.data.ingest import ingest_items, read_csv

    (tmp_path / "imgs").mkdir()
    img, mask = np.zeros((40, 60, 3), np.uint8), np.zeros((40, 60), np.uint8)
    img[5:30, 10:40, 1], mask[5:30, 10:40] = 255, 255
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "imgs" / "a_m.png"), mask)
    (tmp_path / "list.csv").write_text("category,rgb,mask,x0,y0,x1,y1\n"
                                       "car,imgs/a.png,imgs/a_m.png,10,5,40,30\n"
                                       "car,imgs/a.png,imgs/a_m.png,100,50,140,90\n")
    summary = ingest_items(read_csv(tmp_path / "list.csv"), tmp_path / "c.h5", crop_size=16,
                           progress=False)
    assert summary["images"] == 1 and summary["skipped_reasons"] == {"box outside the image": 1}


def test_a_notebook_parameter_of_the_wrong_type_is_named():
    from ss3d.config import ConfigError, config_from_namespace

    with pytest.raises(ConfigError, match="notebook parameter 'overrides': expected a mapping"):
        config_from_namespace({}, "", "a=b")
