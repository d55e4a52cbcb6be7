"""Appearance transfer: the same test inputs under another look, paired item by item.

Each synthetic test item (the held-out models of every pre-training and zero-shot category,
input = view 0 of the renders) is rendered again from the same camera under each appearance
set of :mod:`ss3d.data.appearance` (``plain``, ``photo``, ``heldout``). The geometry, the
camera and the ground truth are the same; only the textures, materials, lights and camera
nuisances differ. The pre-trained and distilled models reconstruct every version, and the
differences of each look against ``plain`` are paired by item (bootstrap intervals):

* ``photo − plain``: what a look costs that training may have seen (``render.appearance:
  photo``), or not (``plain`` training);
* ``heldout − plain``: what a look costs that no training saw (other texture families,
  tungsten light from the side, glossier materials): the transfer gap.

A look's item is drawn exactly as the renders draw view 0 (same random streams), so the
``plain`` items equal the renders' inputs when the renders are plain, and the ``photo`` items
equal them when the renders were made with ``photo`` (tested).

Outputs (``outputs/<name>/transfer/``): ``transfer.json`` (rows, summary, differences),
``transfer.md``, ``transfer_inputs.png`` (the looks side by side) and ``transfer_bars.png``;
logged to MLflow with the headline ``headline.<model>.<look>_minus_plain.fscore_0.05``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import torch

from ss3d.config import ExperimentConfig
from ss3d.data.appearance import APPEARANCE_SETS, appearance_set, sample_material
from ss3d.data.render import MeshRenderer, RenderSettings, look_stream, render_look_view
from ss3d.data.shapenet import load_model
from ss3d.engine import autocast
from ss3d.eval.items import EvalItem, synthetic_items
from ss3d.eval.stats import bootstrap_ci, paired_bootstrap_diff
from ss3d.stages.data import data_paths, find_renders
from ss3d.stages.evaluate import choose_surface_levels, find_models, level_items
from ss3d.stages.evaluate_items import evaluate_item, load_networks
from ss3d.stages.shell import StageRun, stage_dir

__all__ = ["GROUPS", "LOOKS", "TransferResult", "look_items", "transfer_stage"]

STAGE = "transfer"
LOOKS = tuple(APPEARANCE_SETS)  # plain first: the reference of every difference
METRICS = ("fscore@0.05", "mask_iou")
# the item groups every summary is given for: which rows each keeps
GROUPS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "all": lambda r: True, "seen": lambda r: not r["zero_shot"],
    "zero-shot": lambda r: r["zero_shot"]}


@dataclass
class TransferResult:
    run_id: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    markdown: str = ""
    figures: dict[str, plt.Figure] = field(default_factory=dict)
    wall_seconds: float = 0.0


def _view0_cameras(renders: Path) -> dict[str, tuple[str, float, float, float]]:
    """``model_id -> (synset, azimuth, elevation, distance)`` of every model's input view."""
    with h5py.File(renders, "r") as f:
        n = int(f.attrs["complete_models"])
        return {str(m): (str(s), float(a), float(e), float(d)) for m, s, a, e, d in zip(
            f["model_id"].asstr()[:n], f["synset"].asstr()[:n], f["azimuth"][:n, 0],
            f["elevation"][:n, 0], f["distance"][:n, 0])}


def look_items(cfg: ExperimentConfig, items: list[EvalItem], renders: Path, look: str
               ) -> list[EvalItem]:
    """``items`` with their input image rendered again under appearance set ``look``.

    The item's ``(3, S, S)`` input is view 0 of its model, from the renders' camera and with
    the renders' settings, drawn from the random stream the renders use for view 0; masked
    like the renders' inputs. Everything else (ground truth, novel views) is shared.
    """
    s = appearance_set(look)
    settings = dataclasses.replace(RenderSettings.from_config(cfg), appearance=look)
    cameras = _view0_cameras(renders)
    out: list[EvalItem] = []
    with MeshRenderer.for_settings(settings) as renderer:
        for item in items:
            if item.mesh_path is None:
                raise ValueError(f"{item.category}/{item.key}: no mesh to render")
            synset, az, el, dist = cameras[item.key]
            rng = look_stream(settings.seed, f"{synset}/{item.key}", s)
            scene = renderer.scene_for(load_model(item.mesh_path), sample_material(rng, s))
            rgb, mask, _ = render_look_view(renderer, scene, az, el, dist, s, rng)
            image = torch.from_numpy(rgb).float() / 255.0 * torch.from_numpy(mask)[..., None]
            out.append(dataclasses.replace(item, image=image.permute(2, 0, 1).contiguous()))
    return out


def _summary(rows: list[dict[str, Any]], seed: int) -> tuple[list[dict], list[dict]]:
    """Per model and look (all items, seen, zero-shot): means with bootstrap intervals; per
    model, each look minus ``plain``, paired by item."""
    summary, differences = [], []
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        by_look = {look: [r for r in rows if r["model"] == model and r["look"] == look]
                   for look in LOOKS}
        for group, keep in GROUPS.items():
            for look in LOOKS:
                mine = [r for r in by_look[look] if keep(r)]
                if not mine:
                    continue
                entry = {"model": model, "group": group, "look": look, "n": len(mine)}
                for metric in METRICS:
                    ci = bootstrap_ci([r.get(metric, math.nan) for r in mine], seed=seed)
                    entry[metric] = ci.estimate
                    entry[f"{metric}_ci"] = [ci.low, ci.high]
                summary.append(entry)
            reference = {r["key"]: r for r in by_look["plain"] if keep(r)}
            for look in LOOKS[1:]:
                pairs = [(r, reference[r["key"]]) for r in by_look[look]
                         if keep(r) and r["key"] in reference]
                if not pairs:
                    continue
                entry = {"model": model, "group": group, "look": f"{look} − plain",
                         "n": len(pairs)}
                for metric in METRICS:
                    ci = paired_bootstrap_diff([a.get(metric, math.nan) for a, _ in pairs],
                                               [b.get(metric, math.nan) for _, b in pairs],
                                               seed=seed)
                    entry[metric] = ci.estimate
                    entry[f"{metric}_ci"] = [ci.low, ci.high]
                    entry[f"{metric}_verdict"] = (
                        "lower" if ci.high < 0 else "higher" if ci.low > 0 else "level")
                differences.append(entry)
    return summary, differences


def _markdown(summary: list[dict], differences: list[dict], render_look: str) -> str:
    def cell(entry: dict, metric: str) -> str:
        low, high = entry[f"{metric}_ci"]
        return f"{entry[metric]:+.3f} [{low:+.3f}, {high:+.3f}]" if " − " in entry["look"] \
            else f"{entry[metric]:.3f} [{low:.3f}, {high:.3f}]"

    lines = [f"Pre-training renders' appearance: `{render_look}`. Inputs re-rendered from the "
             "same cameras under each look; 95% bootstrap intervals, differences paired by "
             "item.", "", "| model | items | look | n | F@0.05 | mask IoU |",
             "|---|---|---|---|---|---|"]
    for entry in [*summary, *differences]:
        lines.append(f"| {entry['model']} | {entry['group']} | {entry['look']} | {entry['n']} | "
                     f"{cell(entry, 'fscore@0.05')} | {cell(entry, 'mask_iou')} |")
    return "\n".join(lines) + "\n"


def _inputs_figure(looks: dict[str, list[EvalItem]], per_look: int = 6) -> plt.Figure:
    """The first inputs of each category under every look, one row per look."""
    reference = looks[LOOKS[0]]
    picks = list(dict.fromkeys(i for i, item in enumerate(reference)
                               if item.category not in {reference[j].category
                                                        for j in range(i)}))
    picks = (picks + [i for i in range(len(reference)) if i not in picks])[:per_look]
    fig, axes = plt.subplots(len(looks), len(picks), squeeze=False,
                             figsize=(1.4 * len(picks), 1.5 * len(looks)))
    for row, (look, items) in enumerate(looks.items()):
        for col, i in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(items[i].image.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(items[i].category, fontsize=8)
            if col == 0:
                ax.set_ylabel(look, fontsize=8)
    fig.tight_layout()
    return fig


def _bars_figure(summary: list[dict]) -> plt.Figure:
    entries = [e for e in summary if e["group"] == "all"]
    models = list(dict.fromkeys(e["model"] for e in entries))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(models), 2.8))
    width = 0.8 / len(LOOKS)
    for k, look in enumerate(LOOKS):
        mine = [next((e for e in entries if e["model"] == m and e["look"] == look), None)
                for m in models]
        xs = [i + (k - (len(LOOKS) - 1) / 2) * width for i in range(len(models))]
        values = [e["fscore@0.05"] if e else math.nan for e in mine]
        errors = [[e["fscore@0.05"] - e["fscore@0.05_ci"][0] if e else 0 for e in mine],
                  [e["fscore@0.05_ci"][1] - e["fscore@0.05"] if e else 0 for e in mine]]
        ax.bar(xs, values, width, yerr=errors, label=look, capsize=2)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("F@0.05 (test models)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def transfer_stage(cfg: ExperimentConfig, *, models_per_category: int | None = None,
                   progress: bool = True, track: bool = True,
                   out_dir: str | Path | None = None) -> TransferResult:
    """Evaluate the pre-trained and distilled models on every look of the synthetic test items.

    ``models_per_category``: test models per category (default ``evaluate.models_per_category``).
    """
    level_cfg = cfg  # the levels are chosen on the evaluation's own val items
    if models_per_category is not None:
        cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(
            cfg.evaluate, models_per_category=models_per_category))
    run = StageRun(cfg, STAGE, track=track, progress=progress, seed=cfg.seed)
    device = run.device
    models = [m for m in find_models(cfg, track)[0] if m.stage in ("pretrain", "distill")]
    paths = data_paths(cfg)
    renders = find_renders(cfg)[0] if track else paths.renders
    if not renders.is_file():
        raise FileNotFoundError(f"no rendered data at {renders}: run notebooks/00_render.ipynb")
    with h5py.File(renders, "r") as f:
        render_look = str(f.attrs.get("appearance", "plain"))
    base, intrinsics = synthetic_items(cfg, renders, paths)
    if not base:
        raise ValueError(f"{renders}: no test models to evaluate transfer on")
    out = Path(out_dir) if out_dir else stage_dir(cfg, STAGE)
    out.mkdir(parents=True, exist_ok=True)
    result = TransferResult()
    nets = load_networks(models, device)
    notes: list[str] = []
    val_items = level_items(level_cfg, renders, notes)
    with run.open(consumed=[m.run_id for m in models]):
        # each model at the level the evaluation reads it at (the same deterministic choice)
        choose_surface_levels(level_cfg, models, nets, val_items, device, run)
        for note in notes:
            run.print(note)
        looks = {look: look_items(cfg, base, renders, look) for look in LOOKS}
        with run.bar(total=len(models) * len(LOOKS) * len(base), desc="transfer",
                     unit="item") as bar:
            for model in models:
                for look, items in looks.items():
                    for item in items:
                        # the evaluation's precision: the plain rows are its rows (tested)
                        with autocast(device, cfg.optim.amp):
                            metrics, _ = evaluate_item(nets[model.label], item,
                                                       model.alignment_for(item), cfg,
                                                       intrinsics, device,
                                                       peak_fraction=model.peak_fraction)
                        result.rows.append({
                            "model": model.label, "look": look, "category": item.category,
                            "zero_shot": item.zero_shot, "key": item.key,
                            **{m: metrics.get(m, math.nan) for m in METRICS}})
                        bar.update()
        result.summary, result.differences = _summary(result.rows, cfg.seed)
        result.markdown = _markdown(result.summary, result.differences, render_look)
        result.figures = {"transfer_inputs": _inputs_figure(looks),
                          "transfer_bars": _bars_figure(result.summary)}
        payload = {"experiment": cfg.name, "render_appearance": render_look,
                   "looks": list(LOOKS), "models": [m.label for m in models],
                   "surface_levels": {m.label: m.surface_level(cfg) for m in models},
                   "summary": result.summary, "differences": result.differences,
                   "rows": result.rows}
        (out / "transfer.json").write_text(json.dumps(payload, indent=1, default=float))
        (out / "transfer.md").write_text(result.markdown)
        for name, fig in result.figures.items():
            fig.savefig(out / f"{name}.png", dpi=110)
            run.log_figure(fig, name)
        run.log_artifact(out / "transfer.json")
        run.log_artifact(out / "transfer.md")
        for d in result.differences:
            if d["group"] == "all" and math.isfinite(d["fscore@0.05"]):
                model = d["model"].replace(": ", "-").replace(" ", "_")
                look = d["look"].split(" ")[0]
                run.log_headline({f"{model}.{look}_minus_plain.fscore_0.05": d["fscore@0.05"]})
        run.print(result.markdown)
    result.run_id = run.run_id
    result.wall_seconds = run.wall_seconds
    return result
