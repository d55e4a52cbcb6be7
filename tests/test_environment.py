"""environment.yml (conda, GPU nodes) and pyproject.toml (the pins) must agree."""

from __future__ import annotations

import tomllib

import yaml

from .conftest import REPO


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        name, _, version = req.partition("==")
        assert version, f"unpinned requirement {req!r}: pin it with =="
        pins[name.strip().lower()] = version.strip()
    return pins


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == pinned


def test_installed_versions_match_pins():
    from importlib.metadata import version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, pinned in _pins(project["dependencies"]).items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}"
