"""``benchmarks/profile_pipeline.py``: a phase's time excludes the phases nested in it, and what
no phase covers is the stage's ``other`` (known answers on a fake clock)."""

from __future__ import annotations

import importlib
import json

from .conftest import load_benchmark


def test_phases_are_exclusive_and_the_rest_is_other(tmp_path, monkeypatch):
    module = load_benchmark("profile_pipeline")
    clock = [0.0]
    monkeypatch.setattr(module.time, "perf_counter", lambda: clock[0])

    def tick(seconds: float) -> None:
        clock[0] += seconds

    profile = module.Profile()
    inner = profile.wrap(lambda: tick(2.0), "mesh extraction")

    def outer_body() -> None:
        tick(1.0)
        inner()
        inner()
        tick(0.5)

    outer = profile.wrap(outer_body, "figures")

    def stage() -> None:
        tick(3.0)  # no phase: other
        outer()

    profile.run_stage("evaluate", stage)
    assert profile.seconds["evaluate"] == {"mesh extraction": 4.0, "figures": 1.5,
                                           "other": 3.0}
    table = module.write_outputs(profile, tmp_path)
    assert "| **evaluate** | | **8.5** | **100%** |" in table
    assert json.loads((tmp_path / "profile.json").read_text())["evaluate"]["figures"] == 1.5
    assert (tmp_path / "profile.png").stat().st_size > 0


def test_every_instrumented_function_exists():
    """A renamed library function must not silently drop out of the profile."""
    module = load_benchmark("profile_pipeline")
    for (module_name, attr) in module.PHASES:
        owner = importlib.import_module(module_name)
        for part in attr.split("."):
            owner = getattr(owner, part)
        assert callable(owner), (module_name, attr)
