"""Where the mesh's thin parts go: grid resolution, coarse-to-fine and surface level.

    .venv/bin/python benchmarks/mesh_level.py CHECKPOINT [--config experiments/smoke.yaml]
        [--split val] [--resolutions 48 96] [--coarse 2 1] [--levels 0.6 0.7 0.8]

The evaluation extracts each shape with marching cubes on an ``evaluate.mesh_resolution``
grid, coarse to fine (``evaluate.coarse_factor``: only cells whose coarse corners straddle
the level are refined, so a part thinner than the coarse spacing that no coarse point falls
inside is never looked at), at ``evaluate.peak_fraction`` of the shape's peak density. This
scores one checkpoint's meshes of a split's synthetic models under every combination, with the
same surface sampling and F-scores as the evaluation, and prints per setting: F@0.02 and
F@0.05 pooled over the seen categories and over the zero-shot ones, the airplanes' F@0.02
(their wings are the thin parts the report tracks), the number of seen categories whose mean
F@0.05 is above their category medoid's, and the seconds per mesh.

Choose on ``--split val`` (the evaluation reads the test split); the zero-shot categories
have test models only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ss3d.config import ExperimentConfig, load_config  # noqa: E402
from ss3d.engine import autocast  # noqa: E402
from ss3d.eval.baselines import build_baselines, shape_metrics  # noqa: E402
from ss3d.eval.items import synthetic_items  # noqa: E402
from ss3d.eval.mesh import extract_mesh  # noqa: E402
from ss3d.eval.metrics import chamfer_fscore, sample_mesh_surface  # noqa: E402
from ss3d.model import load_network  # noqa: E402
from ss3d.stages.data import data_paths  # noqa: E402

Setting = tuple[int, int, float]  # (resolution, coarse_factor, peak_fraction)


def score_settings(cfg: ExperimentConfig, checkpoint: str | Path, split: str,
                   settings: list[Setting], progress: bool = True) -> list[dict[str, Any]]:
    """One row per setting: ``resolution``, ``coarse``, ``level``, pooled ``seen_f02`` and
    ``seen_f05``, ``zero_shot_f05`` and ``airplane_f02`` (NaN when the split has none),
    ``above_medoid`` (seen categories whose mean F@0.05 beats their medoid's) of
    ``seen_categories``, ``seconds_per_mesh``, ``items``, and ``per_item`` (each item's key,
    category, zero-shot flag, F@0.02, F@0.05 and its medoid's F@0.05)."""
    e = cfg.evaluate
    thresholds = tuple(e.fscore_thresholds)
    paths = data_paths(cfg)
    items, _ = synthetic_items(cfg, paths.renders, paths, split=split)
    if not items:
        raise ValueError(f"{paths.renders}: no {split} models to score")
    baselines = build_baselines(cfg, paths.renders)
    net, _ = load_network(checkpoint)
    net.eval()
    scores: dict[Setting, list[dict[str, float]]] = {s: [] for s in settings}
    seconds: dict[Setting, float] = dict.fromkeys(settings, 0.0)
    medoid: list[float] = []
    # the network under the evaluation's own autocast, so that a row at the evaluation's
    # settings reads as the evaluation would
    with torch.no_grad(), autocast(torch.device("cpu"), cfg.optim.amp):
        for item in tqdm(items, desc=f"{split} items", unit="item", disable=not progress):
            if item.category in baselines.medoid:
                medoid.append(shape_metrics(baselines.train[item.category],
                                            baselines.medoid[item.category], item,
                                            thresholds)["fscore@0.05"])
            else:
                medoid.append(float("nan"))
            latent = net.encode(item.image[None])
            for s in settings:
                resolution, coarse, level = s
                tic = time.perf_counter()
                mesh = extract_mesh(lambda p, latent=latent: net.query(p, latent), resolution,
                                    e.density_threshold, peak_fraction=level,
                                    coarse_factor=coarse)
                seconds[s] += time.perf_counter() - tic
                pred = sample_mesh_surface(mesh.verts, mesh.faces, e.surface_points, seed=0)
                scores[s].append(chamfer_fscore(pred, item.surface, thresholds))

    cats = np.array([item.category for item in items])
    seen = ~np.array([item.zero_shot for item in items])
    medoid_f = np.array(medoid)
    seen_cats = sorted(set(cats[seen]))

    def mean(values: np.ndarray, where: np.ndarray) -> float:
        return float(values[where].mean()) if where.any() else float("nan")

    rows = []
    for s in settings:
        f02 = np.array([r["fscore@0.02"] for r in scores[s]])
        f05 = np.array([r["fscore@0.05"] for r in scores[s]])
        above = sum(bool(f05[seen & (cats == c)].mean() > medoid_f[seen & (cats == c)].mean())
                    for c in seen_cats)
        rows.append({"resolution": s[0], "coarse": s[1], "level": s[2],
                     "seen_f02": mean(f02, seen), "seen_f05": mean(f05, seen),
                     "zero_shot_f05": mean(f05, ~seen),
                     "airplane_f02": mean(f02, cats == "airplane"),
                     "above_medoid": above, "seen_categories": len(seen_cats),
                     "seconds_per_mesh": seconds[s] / len(items), "items": len(items),
                     "per_item": [{"item": item.key, "category": item.category,
                                   "zero_shot": item.zero_shot, "f02": float(a),
                                   "f05": float(b), "medoid_f05": float(m)}
                                  for item, a, b, m in zip(items, f02, f05, medoid_f)]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", default="experiments/smoke.yaml")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--per-category", type=int, default=None,
                        help="models per category (default: evaluate.models_per_category)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[48, 96])
    parser.add_argument("--coarse", type=int, nargs="+", default=[2, 1],
                        help="coarse_factor values (1 = every grid point queried)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.6, 0.7, 0.8],
                        help="peak_fraction values")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every setting's row with its per-item F-scores here "
                        "(for paired comparisons between checkpoints on the same items)")
    args = parser.parse_args()

    overrides = {} if args.per_category is None else {
        "evaluate.models_per_category": args.per_category}
    cfg = load_config(args.config, overrides)
    settings = list(itertools.product(args.resolutions, args.coarse, args.levels))
    rows = score_settings(cfg, args.checkpoint, args.split, settings)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"{rows[0]['items']} {args.split} items; {args.checkpoint}")
    print(f"{'resolution':>10s}{'coarse':>7s}{'level':>6s}{'seen F@.02':>11s}{'seen F@.05':>11s}"
          f"{'0-shot F@.05':>13s}{'airplane F@.02':>15s}{'> medoid':>9s}{'s/mesh':>7s}")
    for r in rows:
        print(f"{r['resolution']:>10d}{r['coarse']:>7d}{r['level']:>6.2f}{r['seen_f02']:>11.3f}"
              f"{r['seen_f05']:>11.3f}{r['zero_shot_f05']:>13.3f}{r['airplane_f02']:>15.3f}"
              f"{r['above_medoid']:>5d}/{r['seen_categories']:<3d}"
              f"{r['seconds_per_mesh']:>7.2f}")


if __name__ == "__main__":
    main()
