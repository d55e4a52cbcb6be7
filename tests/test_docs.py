"""The docs say what the code does: the README's examples run, and the tables of
``docs/reference.md`` that restate code are equal to it.

A stale example (a moved import, a renamed flag, a removed command) fails here instead of for
a user. Each test names the mutation it was seen to fail on.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ss3d.cli import build_parser, main

from .conftest import REPO

README = (REPO / "README.md").read_text()


def _fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _readme_commands() -> list[str]:
    """Every ``ss3d ...`` command line of the README's bash blocks (continuations joined,
    comments dropped, shell variables given a value)."""
    commands = []
    for block in _fenced(README, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("ss3d "):
                commands.append(re.sub(r"\$\{?\w+\}?", "1", line))
    return commands


def _readme_subcommands() -> set[str]:
    """The subcommands the README names anywhere: its command lines and inline ``ss3d X``."""
    named = {shlex.split(c)[1] for c in _readme_commands()}
    named |= set(re.findall(r"`ss3d ([a-z]+)\b", README))
    return named


def test_the_readme_shows_commands():
    commands = _readme_commands()
    assert len(commands) >= 20, commands
    assert {"render", "pretrain", "selftrain", "distill", "evaluate", "reconstruct", "report",
            "pipeline", "sweep", "config", "ingest"} <= _readme_subcommands()


@pytest.mark.parametrize("command", _readme_commands())
def test_every_readme_command_line_parses(command):
    """The README's command lines as the CLI's parser reads them (no run).

    Mutations caught: ``--teacher`` renamed ``--teachers`` in ``ss3d/cli.py`` (the distil
    line fails); the ``transfer`` subcommand removed (fails its ``--help``, below)."""
    argv = shlex.split(command)[1:]
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        sub.allow_abbrev = False  # a flag renamed --teachers would still take --teacher
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"`{command}` does not parse (exit {exit_.code})")
    assert args.command == argv[0]


@pytest.mark.parametrize("subcommand", sorted(_readme_subcommands()))
def test_every_readme_subcommand_has_help(subcommand, capsys):
    """``ss3d <command> --help`` for every command the README names."""
    with pytest.raises(SystemExit) as exit_:
        main([subcommand, "--help"])
    assert exit_.value.code == 0
    assert f"usage: ss3d {subcommand}" in capsys.readouterr().out


def test_the_ss3d_executable_lists_the_readme_commands():
    """The installed entry point (``pyproject.toml``'s script), as a user runs it."""
    executable = Path(sys.executable).with_name("ss3d")
    if not executable.exists():
        pytest.skip("no ss3d script beside this Python (not installed with pip -e)")
    out = subprocess.run([str(executable), "--help"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    for subcommand in _readme_subcommands():
        assert subcommand in out, subcommand


def test_the_readme_python_blocks_run(mlflow_store, tmp_path):
    """Every ```python block of the README, executed as written against a store that holds a
    registered ``ss3d-unified`` (a small untrained network: the blocks' calls, not a
    trained model, are what is checked). ``images``, which the README leaves to the
    reader, is given.

    Mutation caught: the README's import put back as ``from ss3d.stages.distill import
    load_unified`` (ImportError)."""
    import mlflow
    import torch

    from ss3d.config import load_config
    from ss3d.model import ReconstructionNet
    from ss3d.stages.unified import register_student

    from .test_pretrain import TINY

    blocks = _fenced(README, "python")
    assert blocks, "the README shows Python"
    cfg = load_config(None, {**TINY, "name": "readme", "output_dir": str(tmp_path)})
    torch.manual_seed(0)
    with mlflow.start_run():
        assert register_student(ReconstructionNet(cfg.model), cfg) == "1"
    size = cfg.data.crop_size
    images = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    for block in blocks:
        namespace = {"images": images}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    if "latents" in namespace:
        assert np.asarray(namespace["latents"]).shape == (2, cfg.model.latent_dim)
    if "net" in namespace:
        assert isinstance(namespace["net"], ReconstructionNet)


def _frame_table() -> dict[str, tuple[str, ...]]:
    text = (REPO / "docs" / "reference.md").read_text()
    found = re.search(r"<!-- frame-parts:start -->\n(.*?)<!-- frame-parts:end -->", text, re.S)
    assert found, "docs/reference.md lists the frame parts between its frame-parts markers"
    rows = {}
    for line in found.group(1).strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = tuple(tuple(p.strip() for p in c.split(",")) if c != "–" else ()
                               for c in cells[1:])
    return rows


def test_the_documented_frame_parts_are_the_ones_the_tests_check():
    """``docs/reference.md`` says which sides of which category
    ``tests/test_procedural.py::test_frame_parts_sit_where_the_canonical_frame_says`` checks:
    its table is ``CATEGORY_FRAMES``.

    Mutation caught: ``bottom=("tyre",)`` dropped from ``ss3d/data/procedural/car.py``'s
    registration (the table still lists it)."""
    from ss3d.data.procedural import CATEGORY_FRAMES

    declared = {c: (f.front, f.back, f.top, f.bottom) for c, f in CATEGORY_FRAMES.items()}
    assert _frame_table() == declared
