"""Tracking at cluster scale: a real PostgreSQL database behind a real `mlflow server`, two
stages logging to it at the same time through ``MLFLOW_TRACKING_URI``, both runs found with
their artifacts and lineage (README: Running on a cluster).

PostgreSQL comes from the distribution's packages (`make test` installs Debian's `postgresql`
when `initdb` is missing); the driver is `psycopg2-binary` (a dev dependency)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import format_set_args
from ss3d.engine import load_checkpoint

from .conftest import REPO
from .test_pretrain import TINY


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(
        f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} not found: `make test` installs Debian's postgresql "
                    "(apt-get install postgresql)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: drop to the distribution's postgres user
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server() -> Iterator[int]:
    """A throwaway PostgreSQL cluster on a free local port with a database ``mlflow``."""
    root = Path(tempfile.mkdtemp(prefix="ss3d-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    try:
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True)
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-w", "-l",
                                     str(root / "log"), "-o",
                                     f"-p {port} -k {root} -h 127.0.0.1", "start"]),
                       check=True, capture_output=True)
        try:
            subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                            "postgres", "mlflow"], check=True, capture_output=True)
            yield port
        finally:
            subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast",
                                         "stop"]), capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(pg_port: int, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on PostgreSQL, serving artifacts from ``artifacts``; yields its URL."""
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_cli), "server", "--backend-store-uri",
         f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/mlflow", "--artifacts-destination",
         str(artifacts), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the first start creates the schema
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {proc.stderr.read()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ss3d(stage: str, overrides: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ss3d.cli", stage,
                             *format_set_args(overrides)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


@pytest.mark.slow
def test_two_stages_at_once_against_a_postgres_backed_server(tmp_path, monkeypatch):
    artifacts = tmp_path / "artifacts"
    with postgres_server() as pg_port, mlflow_server(pg_port, artifacts) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PYOPENGL_PLATFORM": "egl"}
        first = {**TINY, "name": "server-a", "data.root": str(tmp_path / "a"),
                 "output_dir": str(tmp_path / "out"), "pretrain.steps": 6,
                 "pretrain.val_every": 3, "pretrain.checkpoint_every": 3}
        second = {**first, "name": "server-b", "data.root": str(tmp_path / "b")}
        _finish(_ss3d("render", first, env))
        # at the same time: pre-training of experiment a, rendering of experiment b
        running = [_ss3d("pretrain", first, env), _ss3d("render", second, env)]
        for proc in running:
            _finish(proc)

        client = MlflowClient(url)
        runs = {}
        for name in ("server-a", "server-b"):
            experiment = client.get_experiment_by_name(name)
            assert experiment is not None, name
            for run in client.search_runs([experiment.experiment_id]):
                runs[(name, run.data.tags[tracking.TAG_STAGE])] = run
        assert set(runs) == {("server-a", "render"), ("server-a", "pretrain"),
                             ("server-b", "render")}
        assert all(r.info.status == "FINISHED" for r in runs.values())
        # lineage: the pre-training run names the render run it consumed
        pretrain, render_a = runs[("server-a", "pretrain")], runs[("server-a", "render")]
        assert pretrain.data.tags[tracking.TAG_CONSUMED] == render_a.info.run_id
        # artifacts went through the server into its artifact root, and come back from it
        checkpoint = tracking.artifact_path(pretrain, "checkpoints/last.pt")
        assert load_checkpoint(checkpoint)["step"] == 6
        # the download lives until the process exits, then goes (not one temp dir per call)
        download = Path(tracking._DOWNLOADS[-1])
        assert checkpoint.is_relative_to(download)
        tracking._remove_downloads()
        assert not download.exists()
        stored = {p.name for p in artifacts.rglob("*") if p.is_file()}
        assert "last.pt" in stored
        render_b = runs[("server-b", "render")]
        assert client.list_artifacts(render_b.info.run_id), "render b logged no artifacts"
        assert pretrain.data.params["pretrain.steps"] == "6"
