"""Where the main job's minutes go: every stage of the pipeline, split into its phases.

    make profile                                   # the embedded default (experiments/smoke.yaml)
    .venv/bin/python benchmarks/profile_pipeline.py --set pretrain.steps=100 --out outputs/prof

Runs the stage functions the notebooks call (render, pre-train, self-train every collection
with its H = 1 ablation, distil, evaluate), in this process, tracked in a fresh SQLite MLflow
store under ``--out``, and times named phases by wrapping the library functions that do them
(``PHASES``): rendering, forward and loss, backward and optimiser step, validation, the pose
grid, the camera search, choosing hypotheses, mesh extraction, 3D metrics, mesh colours,
figures, checkpoints and MLflow I/O. A phase's time excludes the phases nested in it; what no
phase covers is the stage's ``other`` (data loading, Python between the calls). Writes
``profile.md`` (the table), ``profile.json`` and ``profile.png`` (a stacked bar per stage).

Evaluation runs its items in this one process here (``evaluate.workers`` 1): items evaluated
in worker processes would be invisible to the wrapped functions. Its two-process time is
measured side by side in docs/results.md.

Wrapping adds a ``perf_counter`` pair per call: negligible next to the phases it times.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (module, attribute) -> phase. Methods are "Class.method".
PHASES: dict[tuple[str, str], str] = {
    ("ss3d.data.render", "render_models"): "render (pyrender)",
    ("ss3d.data.render", "render_models_parallel"): "render (pyrender)",
    ("ss3d.data.procedural.builder", "generate_category"): "procedural models",
    ("ss3d.stages.data", "build_rendered_collection"): "photo collections",
    ("ss3d.stages.pretrain", "pretrain_loss"): "forward + loss",
    ("ss3d.engine", "optimiser_step"): "backward + optimiser step",
    ("ss3d.stages.pretrain", "ViewpointTraining.step"): "viewpoint network",
    ("ss3d.stages.pretrain", "render_validation"): "validation renders",
    ("ss3d.stages.pretrain", "sphere_baseline"): "baselines",
    ("ss3d.stages.selftrain_loops", "initialise_from_grid"): "pose grid",
    ("ss3d.stages.selftrain_loops", "optimise_cameras"): "camera search",
    ("ss3d.stages.selftrain_loops", "selftrain_step"): "step: logit scores, network forward",
    ("ss3d.stages.selftrain_loops", "choose_hypotheses"): "evaluation: choice",
    ("ss3d.stages.selftrain_loops", "chosen_mask_iou"): "evaluation: mask IoU",
    ("ss3d.stages.distill", "distill_step"): "forward + loss",
    ("ss3d.stages.distill", "agreement"): "validation renders",
    ("ss3d.eval.items", "synthetic_items"): "test items",
    ("ss3d.eval.items", "collection_items"): "test items",
    ("ss3d.eval.baselines", "build_baselines"): "baselines",
    ("ss3d.eval.baselines", "baseline_rows"): "baselines",
    ("ss3d.stages.evaluate_items", "load_networks"): "model loading",
    ("ss3d.eval.mesh", "extract_mesh"): "mesh extraction",
    ("ss3d.eval.metrics", "chamfer_fscore"): "3D metrics",
    ("ss3d.eval.texture", "paint_from_input"): "mesh colours",
    ("ss3d.eval.views", "write_turntable"): "turntables",
    ("ss3d.stages.selftrain", "hypotheses_figure"): "figures",
    ("ss3d.stages.selftrain", "curves_figure"): "figures",
    ("ss3d.stages.pretrain", "_validation_figure"): "figures",
    ("ss3d.stages.pretrain", "loss_curve_figure"): "figures",
    ("ss3d.stages.distill", "comparison_figure"): "figures",
    ("ss3d.stages.evaluate", "reconstruction_figure"): "figures",
    ("ss3d.stages.evaluate", "metric_bars"): "figures",
    ("ss3d.engine", "save_checkpoint"): "checkpoints",
    ("ss3d.tracking", "log_metrics"): "MLflow I/O",
    ("ss3d.tracking", "log_figure"): "MLflow I/O",
    ("ss3d.tracking", "log_artifact"): "MLflow I/O",
    ("ss3d.tracking", "log_checkpoint"): "MLflow I/O",
}


class Profile:
    """Exclusive seconds per (stage, phase): a stack of running phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.stage = "setup"
        self._stack: list[list[float]] = []  # [start, nested seconds] per running phase

    def wrap(self, fn: Callable, phase: str) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, nested = self._stack.pop()
                total = time.perf_counter() - start
                self.seconds[self.stage][phase] += total - nested
                if self._stack:
                    self._stack[-1][1] += total
        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def install(self) -> None:
        """Replace every instrumented function wherever ss3d imported it by name."""
        for (module_name, attr), phase in PHASES.items():
            module = importlib.import_module(module_name)
            owner_name, _, method = attr.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            original = getattr(owner, method)
            wrapped = self.wrap(original, phase)
            setattr(owner, method, wrapped)
            if owner_name:
                continue
            for other in list(sys.modules.values()):
                if getattr(other, "__name__", "").startswith("ss3d") and \
                        getattr(other, method, None) is original:
                    setattr(other, method, wrapped)

    def run_stage(self, stage: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        self.stage = stage
        tic = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total = time.perf_counter() - tic
            self.seconds[stage]["other"] += total - sum(
                v for k, v in self.seconds[stage].items() if k != "other")


def run_pipeline(cfg: Any, profile: Profile) -> None:
    """The notebooks' calls, in their order (00 → 04), with the defaults they use."""
    import copy

    from ss3d.stages.data import render_stage
    from ss3d.stages.distill import distill_stage
    from ss3d.stages.evaluate import evaluate_stage
    from ss3d.stages.pretrain import pretrain_stage
    from ss3d.stages.selftrain import selftrain_stage, single_hypothesis_ablation

    profile.run_stage("render", render_stage, cfg, progress=False)
    profile.run_stage("pretrain", pretrain_stage, cfg, progress=False)
    for category in cfg.data.collections:
        stage = f"selftrain {category}"
        result = profile.run_stage(stage, selftrain_stage, cfg, category=category,
                                   progress=False)
        if cfg.selftrain.ablation:
            single = _with_category(cfg, category)
            profile.run_stage(f"{stage} (H = 1)", single_hypothesis_ablation, single, result,
                              progress=False)
    profile.run_stage("distill", distill_stage, cfg, progress=False)
    serial = copy.deepcopy(cfg)
    serial.evaluate.workers = 1  # every item in this process, where the phases are timed
    profile.run_stage("evaluate", evaluate_stage, serial, progress=False)


def _with_category(cfg: Any, category: str) -> Any:
    import copy

    out = copy.deepcopy(cfg)
    out.selftrain.category = category
    return out


def write_outputs(profile: Profile, out: Path) -> str:
    """``profile.md``, ``profile.json`` and ``profile.png`` under ``out``; returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(profile.seconds)
    total = sum(sum(p.values()) for p in profile.seconds.values())
    lines = ["| stage | phase | seconds | share of the job |", "|---|---|---:|---:|"]
    for stage in stages:
        phases = sorted(profile.seconds[stage].items(), key=lambda kv: -kv[1])
        stage_total = sum(v for _, v in phases)
        lines.append(f"| **{stage}** | | **{stage_total:.1f}** | **{stage_total / total:.0%}** |")
        lines += [f"| | {phase} | {sec:.1f} | {sec / total:.1%} |" for phase, sec in phases
                  if sec >= 0.05]
    lines.append(f"| **all** | | **{total:.1f}** | 100% |")
    table = "\n".join(lines)
    (out / "profile.md").write_text(table + "\n")
    (out / "profile.json").write_text(json.dumps(profile.seconds, indent=2))
    phases = sorted({p for s in profile.seconds.values() for p in s},
                    key=lambda p: -sum(s.get(p, 0) for s in profile.seconds.values()))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(stages) + 1.5))
    left = [0.0] * len(stages)
    colours = plt.get_cmap("tab20").colors
    for k, phase in enumerate(phases):
        widths = [profile.seconds[s].get(phase, 0.0) for s in stages]
        ax.barh(stages, widths, left=left, label=phase, color=colours[k % len(colours)])
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(f"Where the main job's {total / 60:.1f} minutes go", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "profile.png", dpi=110)
    plt.close(fig)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parent.parent /
                                                "experiments" / "smoke.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("outputs/profile"))
    args = parser.parse_args()
    import os

    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from ss3d.config import load_config, parse_set_args

    overrides = {"name": "profile", "data.root": str(args.out / "data"),
                 "output_dir": str(args.out / "outputs"), **parse_set_args(args.set)}
    cfg = load_config(args.config, overrides)
    profile = Profile()
    import ss3d.stages.data  # noqa: F401  (every instrumented module imported first)
    import ss3d.stages.distill  # noqa: F401
    import ss3d.stages.evaluate  # noqa: F401
    import ss3d.stages.selftrain  # noqa: F401

    profile.install()
    tic = time.perf_counter()
    run_pipeline(cfg, profile)
    print(write_outputs(profile, args.out))
    print(f"\n{time.perf_counter() - tic:.0f} s in all; table, JSON and figure in {args.out}")


if __name__ == "__main__":
    main()
