"""Shared fixtures. Every test that touches MLflow gets its own SQLite store in a temp dir."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
REPO = Path(__file__).resolve().parent.parent


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_outputs(path: Path) -> tuple[str, int]:
    """What an executed notebook showed: its printed text (streams and text/plain results)
    and the number of PNG figures. Assertions go here, never on the cells' source."""
    import json

    texts, figures = [], 0
    for cell in json.loads(Path(path).read_text())["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append("".join(output.get("text", "")))
            data = output.get("data", {})
            texts.append("".join(data.get("text/plain", "")))
            figures += "image/png" in data
    return "\n".join(texts), figures


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A real, empty SQLite-backed MLflow store; returns its tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    if mlflow.active_run() is not None:
        mlflow.end_run()


def off_edge_disagreement(a, b):
    """Pixels where boolean masks ``a`` and ``b`` differ by more than their one-pixel edge:
    pixels of one that do not touch the other (8-neighbourhood). Empty when two renders of one
    shape differ only by rasterisation rules; a wrong camera convention, or a shift of two
    pixels, is not."""
    from scipy import ndimage

    touches = np.ones((3, 3), bool)
    return ((a & ~ndimage.binary_dilation(b, touches))
            | (b & ~ndimage.binary_dilation(a, touches)))


def pytest_collection_modifyitems(config, items):
    """Files with slow end-to-end tests first (most slow tests first), the rest in their usual
    order: under `make test`'s two processes (pytest-xdist, one file per process at a time)
    the long files then start early and the short ones fill the end, instead of one process
    finishing a long file alone."""
    slow_per_file: dict[str, int] = {}
    for item in items:
        slow_per_file.setdefault(item.path.name, 0)
        slow_per_file[item.path.name] += item.get_closest_marker("slow") is not None
    items.sort(key=lambda item: -slow_per_file[item.path.name])  # stable: file order kept
