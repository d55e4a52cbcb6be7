"""Running the parameterised notebooks through papermill (the pipeline and the tests)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["NOTEBOOKS", "execute", "kernel_name", "notebook_path"]

log = logging.getLogger(__name__)

# The pipeline, in order: (notebook, MLflow stage it records).
NOTEBOOKS: list[tuple[str, str]] = [
    ("00_render", "render"),
    ("01_pretrain", "pretrain"),
    ("02_selftrain", "selftrain"),
    ("03_distill", "distill"),
    ("04_evaluate", "evaluate"),
]


def notebook_path(name: str) -> Path:
    from ss3d.files import repo_root  # not ss3d.tracking: a path needs no MLflow

    return repo_root() / "notebooks" / f"{name}.ipynb"


def kernel_name() -> str:
    """The ``ss3d`` kernel that ``make setup`` registers, else this interpreter's ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "ss3d" if "ss3d" in KernelSpecManager().find_kernel_specs() else "python3"


class NotebookError(RuntimeError):
    """A notebook failed: which one, the cell, what it raised, where the executed copy is."""


def execute(name: str, output: str | Path, parameters: Mapping[str, Any] | None = None,
            cwd: str | Path | None = None, log_output: bool = False) -> Path:
    """Execute ``notebooks/<name>.ipynb`` with papermill into ``output``; returns the path.

    ``log_output``: stream the notebook's printed output and progress bars to this process's
    log as they appear (``ss3d pipeline`` does).

    Raises :class:`NotebookError` naming the notebook, the failing cell and its error; the
    partially executed notebook, with the full traceback, is still written to ``output``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ss3d.tracking import SOURCE_ENV, repo_root

    source = notebook_path(name)
    if not source.is_file():
        raise FileNotFoundError(f"notebook not found: {source}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # the kernel inherits this: its MLflow runs name the notebook as their source
    previous = os.environ.get(SOURCE_ENV)
    os.environ[SOURCE_ENV] = f"notebooks/{source.name}"
    try:
        papermill.execute_notebook(str(source), str(output), parameters=dict(parameters or {}),
                                   kernel_name=kernel_name(), cwd=str(cwd or repo_root()),
                                   progress_bar=False, log_output=log_output)
    except PapermillExecutionError as err:
        value = str(err.evalue).strip().splitlines()
        raise NotebookError(f"{source.name}: cell {err.exec_count} raised {err.ename}: "
                            f"{value[0] if value else ''} (the executed notebook with the "
                            f"traceback: {output})") from None
    finally:
        if previous is None:
            os.environ.pop(SOURCE_ENV, None)
        else:
            os.environ[SOURCE_ENV] = previous
    log.debug("executed %s in %.1fs -> %s", source.name, time.perf_counter() - start, output)
    return output
