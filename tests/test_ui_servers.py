"""``make ui`` and ``make lab`` as a user meets them: MLflow's UI lands in its model-training
view (checked in headless Chromium) with one web worker and no job runner; JupyterLab is
rooted at the repository and offers the one ``ss3d`` kernel."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ss3d.mlflow_ui import WORKFLOW_KEY, WORKFLOW_SCRIPT

from .conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float = 90) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in {seconds} s")


def _descendants(pid: int) -> list[str]:
    """Command lines of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            out.append((Path("/proc") / str(child) / "cmdline").read_bytes()
                       .replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo += children.get(child, [])
    return out


def test_the_page_script_sets_the_training_view_only_where_nothing_was_chosen():
    from flask import Flask, Response

    from ss3d.mlflow_ui import _inject

    with Flask(__name__).test_request_context("/"):
        page = _inject(Response("<!doctype html><html><head><title>x</title></head>",
                                mimetype="text/html"))
        assert page.get_data(as_text=True).startswith(
            f"<!doctype html><html><head>{WORKFLOW_SCRIPT}<title>")
        assert f"getItem('{WORKFLOW_KEY}')" in WORKFLOW_SCRIPT  # a user's choice is kept
        data = _inject(Response('{"a": 1}', mimetype="application/json"))
        assert data.get_data(as_text=True) == '{"a": 1}'


def test_links_open_the_training_view():
    from ss3d.tracking import ui_url

    assert ui_url("3") == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    assert ui_url("3", "ab" * 16).endswith(f"/runs/{'ab' * 16}?workflowType=machine_learning")


def _chromium_dom(url: str, profile: Path) -> str:
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1280,800",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    return proc.stdout


@pytest.mark.slow
def test_mlflow_ui_lands_in_the_runs_table_in_headless_chromium(tmp_path, mlflow_store):
    assert CHROMIUM, "headless Chromium is needed (`make browser` installs Debian's chromium)"
    import mlflow

    from ss3d import tracking

    uri = mlflow_store
    experiment = tracking.configure("ui-check")
    with mlflow.start_run(experiment_id=experiment, run_name="evaluate") as run:
        mlflow.log_metric("headline.collection.distilled.fscore_0.05", 0.5)
        tracking.log_table([{"category": "bird", "model": "distilled", "fscore@0.05": 0.5}],
                           "collection")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"}
    server = subprocess.Popen(
        [sys.executable, "-m", "ss3d.mlflow_ui", "--backend-store-uri", uri, "--port",
         str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        home = _wait(f"{base}/", server).decode()
        assert WORKFLOW_SCRIPT in home
        # never "not modified": a page cached from a plain `mlflow ui` would lack the script
        cached = urllib.request.Request(f"{base}/", headers={
            "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT", "If-None-Match": "*"})
        with urllib.request.urlopen(cached, timeout=10) as answer:
            assert answer.status == 200 and WORKFLOW_SCRIPT in answer.read().decode()
        # one web worker, no job runner: one process below the launcher, uvicorn's
        below = _descendants(server.pid)
        assert len(below) == 1 and "--workers 1" in below[0], below
        # a browser that never chose a mode: the home page, then the experiment as if clicked
        profile = tmp_path / "profile"
        _chromium_dom(f"{base}/", profile)
        page = _chromium_dom(f"{base}/#/experiments/{experiment}", profile)
        assert re.search(rf'href="#/experiments/{experiment}/runs\?[^"]*workflowType='
                         r'machine_learning"[^>]*aria-current="page"', page), page[-3000:]
        assert "workflowType=genai" not in page
        # the report's link to a run: a model-training run page, not "Evaluations"
        page = _chromium_dom(tracking.ui_url(experiment, run.info.run_id, base),
                             tmp_path / "fresh")
        assert "Model metrics" in page and "Evaluations" not in page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_make_lab_roots_jupyterlab_at_the_repository_with_one_kernel(tmp_path):
    port = _free_port()
    args = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO),
                           f"LAB_PORT={port}", "--eval", "print-lab-args: ; @echo $(LAB_ARGS)",
                           "print-lab-args"], capture_output=True, text=True, check=True
                          ).stdout.strip()
    token = "ss3d-test"
    lab = subprocess.Popen(
        f"{REPO / '.venv' / 'bin' / 'jupyter'} lab {args} --IdentityProvider.token={token}",
        shell=True, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)})
    try:
        base = f"http://127.0.0.1:{port}"
        kernels = json.loads(_wait(f"{base}/api/kernelspecs?token={token}", lab))
        assert set(kernels["kernelspecs"]) == {"ss3d"} and kernels["default"] == "ss3d"
        root = json.loads(_wait(f"{base}/api/contents/?token={token}", lab))
        names = {item["name"] for item in root["content"]}
        assert {"notebooks", "experiments", "reports", "README.md"} <= names
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)
