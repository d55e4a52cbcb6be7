"""The SLURM templates: valid bash, and every ss3d / papermill option they use exists."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ss3d.cli import build_parser

from .conftest import REPO

TEMPLATES = sorted((REPO / "experiments" / "slurm").glob("*.sbatch"))


def _commands(text: str) -> list[str]:
    """Shell lines with their backslash continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _subparser_options(name: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {opt for action in sub.choices[name]._actions for opt in action.option_strings}


def test_there_are_templates_for_each_cluster_job():
    names = {p.stem for p in TEMPLATES}
    assert {"render", "render_merge", "train_multinode", "notebook"} <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_is_valid_bash_and_uses_real_options(path):
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "#SBATCH" in text
    used = 0
    for line in _commands(text):
        for match in re.finditer(r"(?:^|\s)(?:ss3d|-m ss3d\.cli) \"?\$?(\w+)\"?([^|;&]*)", line):
            stage, rest = match.group(1), match.group(2)
            # "$STAGE": every stage the template's case statement admits
            stages = (["pretrain", "selftrain", "distill"] if stage == "STAGE" else [stage])
            for name in stages:
                options = _subparser_options(name)
                for flag in re.findall(r"(?<!\S)(--?[a-z][\w-]*)", rest):
                    assert flag in options, f"{path.name}: ss3d {name} has no option {flag}"
            used += 1
        if line.startswith("papermill "):
            papermill = Path(sys.executable).with_name("papermill")  # the project's own
            help_text = subprocess.run([str(papermill), "--help"],
                                       capture_output=True, text=True).stdout
            for flag in re.findall(r"(?<!\S)(--?[a-z][\w-]*)", line):
                assert flag in help_text, f"{path.name}: papermill has no option {flag}"
            used += 1
    assert used, f"{path.name} runs neither ss3d nor papermill"
