"""The git tags of a run (``mlflow.source.git.commit``, ``ss3d.git_dirty``) in real repositories.

Each test names the mutation of :func:`ss3d.tracking.git_state` (or of the tagging in
:func:`ss3d.tracking.start_run`) it was seen to fail on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import load_config

from .conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

NOTEBOOK = "notebooks/01_pretrain.ipynb"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A committed checkout: a source file, a generated report and the project's notebook."""
    root = tmp_path / "checkout"
    (root / "ss3d").mkdir(parents=True)
    (root / "ss3d" / "stage.py").write_text("STEPS = 10\n")
    (root / "reports" / "smoke" / "figures").mkdir(parents=True)
    (root / "reports" / "smoke" / "README.md").write_text("# smoke report\nF@0.05 0.41\n")
    (root / "reports" / "smoke" / "figures" / "bars.png").write_bytes(b"\x89PNG one")
    (root / "notebooks").mkdir()
    shutil.copy(REPO / NOTEBOOK, root / NOTEBOOK)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "initial")
    return root


def _jupyterlab_save(path: Path) -> None:
    """What opening, running and saving a notebook in JupyterLab does to its file: kernel and
    language metadata, execution counts, outputs, per-cell UI metadata, another indent."""
    nb = json.loads(path.read_text())
    nb["metadata"]["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
        "mimetype": "text/x-python", "name": "python", "version": "3.11.9"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    for count, cell in enumerate(nb["cells"], 1):
        cell["metadata"]["scrolled"] = True
        cell["metadata"]["jupyter"] = {"source_hidden": False}
        cell["id"] = f"{count:08x}"
        if cell["cell_type"] == "code":
            cell["execution_count"] = count
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["hi\n"]}]
    path.write_text(json.dumps(nb, indent=2) + "\n")


def test_a_clean_checkout_is_tagged_with_its_commit_and_not_dirty(repo):
    """Mutations caught: the commit read from ``HEAD~`` or returned as ``'unknown'``; the
    changed paths listed by ``git status --porcelain`` (counts the untracked file)."""
    head = _git(repo, "rev-parse", "HEAD")
    assert len(head) == 40
    assert tracking.git_state(repo) == (head, False)
    (repo / "scratch.py").write_text("print('untracked')\n")  # untracked files do not count
    (repo / "ss3d" / "stage.py").touch()  # nor a new mtime on unchanged content
    assert tracking.git_state(repo) == (head, False)
    # a second commit: the tag follows HEAD
    (repo / "ss3d" / "stage.py").write_text("STEPS = 20\n")
    _git(repo, "commit", "-q", "-am", "more steps")
    assert tracking.git_state(repo) == (_git(repo, "rev-parse", "HEAD"), False) != (head, False)


def test_generated_reports_and_notebook_metadata_leave_it_clean(repo):
    """``make smoke`` rewrites the committed ``reports/smoke/``; JupyterLab rewrites a
    notebook's metadata, ids and outputs. Neither changes what a run does.

    Mutations caught: ``GENERATED_PATHS = ()`` (reports count); notebooks compared as text
    (``_changes_source`` True for every changed path); each cell's whole metadata compared
    instead of its tags; the old check (``git status --porcelain --untracked-files=no``
    non-empty)."""
    (repo / "reports" / "smoke" / "README.md").write_text("# smoke report\nF@0.05 0.43\n")
    (repo / "reports" / "smoke" / "figures" / "bars.png").write_bytes(b"\x89PNG two")
    (repo / "reports" / "smoke" / "figures" / "new.png").write_bytes(b"\x89PNG new")
    assert tracking.git_state(repo)[1] is False
    _jupyterlab_save(repo / NOTEBOOK)
    assert _git(repo, "status", "--porcelain")  # git itself sees both changes
    assert tracking.git_state(repo)[1] is False
    _git(repo, "add", "reports", NOTEBOOK)  # staged, the same
    assert tracking.git_state(repo)[1] is False


@pytest.mark.parametrize("edit", ["source", "staged source", "deleted source", "new source",
                                  "notebook cell", "notebook parameters tag", "notebook cell added",
                                  "deleted notebook"])
def test_a_source_edit_makes_it_dirty(repo, edit):
    """Mutations caught: the dirty flag always False; every changed ``.ipynb`` ignored;
    notebook cells compared without their source or without their tags (papermill finds
    its parameters by the ``parameters`` tag); deleted files skipped."""
    source = repo / "ss3d" / "stage.py"
    notebook = repo / NOTEBOOK
    nb = json.loads(notebook.read_text())
    if edit == "source":
        source.write_text("STEPS = 11\n")
    elif edit == "staged source":
        source.write_text("STEPS = 11\n")
        _git(repo, "add", str(source))
    elif edit == "deleted source":
        source.unlink()
    elif edit == "new source":  # added to the index: tracked, not in HEAD
        (repo / "ss3d" / "new.py").write_text("X = 1\n")
        _git(repo, "add", "ss3d/new.py")
    elif edit == "notebook cell":
        _jupyterlab_save(notebook)  # metadata rewritten too: the source edit still counts
        nb = json.loads(notebook.read_text())
        code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        code["source"] = [*code["source"], "\nsteps = 5"]
    elif edit == "notebook parameters tag":
        tagged = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
        tagged["metadata"]["tags"] = []
    elif edit == "notebook cell added":
        nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "feedbeef",
                            "metadata": {}, "outputs": [], "source": ["print(1)"]})
    elif edit == "deleted notebook":
        notebook.unlink()
    if edit.startswith("notebook"):
        notebook.write_text(json.dumps(nb, indent=1) + "\n")
    commit, dirty = tracking.git_state(repo)
    assert commit == _git(repo, "rev-parse", "HEAD")
    assert dirty is True, edit


def test_without_git_the_commit_is_unknown(tmp_path, monkeypatch):
    """Outside a repository, and without a ``git`` executable: ``('unknown', False)``, never
    an exception (a stage must run from an unpacked copy).

    Mutation caught: ``OSError`` not caught (without git the run fails)."""
    plain = tmp_path / "unpacked"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert tracking.git_state(plain) == ("unknown", False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert tracking.git_state(REPO) == ("unknown", False)


def test_runs_carry_the_commit_and_the_dirty_flag_of_their_checkout(repo, mlflow_store,
                                                                   monkeypatch):
    """The tags a stage's run gets, end to end through :func:`tracking.start_run`.

    Mutations caught: ``TAG_DIRTY`` written as ``'false'`` whatever :func:`git_state` says;
    ``TAG_COMMIT`` written as ``'unknown'``."""
    monkeypatch.setattr(tracking, "repo_root", lambda: repo)
    cfg = load_config(None, {"name": "git-tags"})
    head = _git(repo, "rev-parse", "HEAD")
    _jupyterlab_save(repo / NOTEBOOK)
    with tracking.start_run(cfg, "pretrain") as clean:
        pass
    (repo / "ss3d" / "stage.py").write_text("STEPS = 12\n")
    with tracking.start_run(cfg, "pretrain") as edited:
        pass
    client = MlflowClient(mlflow_store)
    tags = [client.get_run(r.info.run_id).data.tags for r in (clean, edited)]
    assert [t[tracking.TAG_COMMIT] for t in tags] == [head, head]
    assert [t[tracking.TAG_DIRTY] for t in tags] == ["false", "true"]
