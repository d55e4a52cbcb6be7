"""Does self-training survive a photo-like collection? The same collection, plain and photo.

    .venv/bin/python benchmarks/photo_collections.py [--config experiments/smoke.yaml]
        [--category bird] [--out outputs/photo_collections]

The collection ``--category`` is rendered twice, identical but for
``data.collection_appearance`` (``plain`` and ``photo``: the same poses, instances and
backgrounds), each under a data root of its own (``<root>-coll-<look>``, which links the
experiment's models and renders) and an experiment ``<name>-coll-<look>``. Each is self-trained
from the experiment's pre-trained model (H as configured, no H = 1 ablation) and evaluated on
its own collection's test images (``evaluate.synthetic`` off, every test image with 3D truth).
The two self-trained models are paired image by image (bootstrap intervals), and each against
the pre-trained model and the sphere on its own look. Writes ``README.md`` and
``photo_collections.json`` to ``--out``. Needs the experiment's pre-training
(``ss3d pretrain``) and renders first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ss3d.config import load_config  # noqa: E402
from ss3d.eval.keys import ModelKey  # noqa: E402
from ss3d.eval.stats import paired_bootstrap_diff  # noqa: E402
from ss3d.stages.data import data_paths, render_stage  # noqa: E402
from ss3d.stages.evaluate import evaluate_stage  # noqa: E402
from ss3d.stages.selftrain import selftrain_stage  # noqa: E402
from ss3d.stages.shell import find_pretrained, stage_dir  # noqa: E402

LOOKS = ("plain", "photo")


def _fmt(ci) -> str:
    return f"{ci.estimate:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/smoke.yaml")
    parser.add_argument("--category", default="bird")
    parser.add_argument("--out", default="outputs/photo_collections")
    args = parser.parse_args()
    base = load_config(args.config)
    pretrained, _ = find_pretrained(base)
    source = data_paths(base)
    results: dict[str, dict] = {}
    for look in LOOKS:
        cfg = load_config(args.config, {
            "name": f"{base.name}-coll-{look}",
            "data.root": f"{base.data.root.rstrip('/')}-coll-{look}",
            "data.collections": [args.category], "data.collection_appearance": look,
            "selftrain.ablation": False, "evaluate.synthetic": False,
            "evaluate.collection_images": base.data.images_per_collection})
        paths = data_paths(cfg)
        paths.root.mkdir(parents=True, exist_ok=True)
        # the experiment's models, renders and collection instances, shared (not copied)
        for name in ("shapenet", "renders.h5", "collection_models"):
            if not (paths.root / name).exists():
                (paths.root / name).symlink_to((source.root / name).resolve())
        # evaluation looks for this experiment's pre-trained model: the base experiment's
        link = stage_dir(cfg, "pretrain") / "last.pt"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(Path(pretrained).resolve())
        start = time.perf_counter()
        render_stage(cfg)
        selftrained = selftrain_stage(cfg, category=args.category, pretrained=pretrained)
        evaluation = evaluate_stage(cfg)
        results[look] = {"minutes": (time.perf_counter() - start) / 60,
                         "last_epoch": selftrained.epochs[-1] if selftrained.epochs else {},
                         "rows": [r for r in evaluation.rows if r["set"] == "collection"]}

    def scores(look: str, model: str, metric: str = "fscore@0.05") -> dict[str, float]:
        return {r["item"]: r[metric] for r in results[look]["rows"] if r.get("model") == model}

    selftrained = ModelKey.selftrained(args.category).label
    lines = [f"# Self-training on a plain and a photo-look {args.category} collection", "",
             f"`{args.config}`, from its pre-trained model; each collection evaluated on its own "
             "test images; 95% bootstrap intervals paired by image.", "",
             "| | plain | photo | photo − plain |", "|---|---|---|---|"]
    for model in (selftrained, "pretrained", "baseline: sphere"):
        for metric in ("fscore@0.05", "fscore@0.1"):
            a, b = scores("photo", model, metric), scores("plain", model, metric)
            keys = sorted(a.keys() & b.keys())
            ci = paired_bootstrap_diff([a[k] for k in keys], [b[k] for k in keys])
            lines.append(f"| {model} {metric} (n = {ci.n}) | "
                         f"{sum(b[k] for k in keys) / len(keys):.3f} | "
                         f"{sum(a[k] for k in keys) / len(keys):.3f} | {_fmt(ci)} |")
    for look in LOOKS:
        mine = scores(look, selftrained)
        keys = sorted(mine)
        for other in ("pretrained", "baseline: sphere"):
            theirs = scores(look, other)
            ci = paired_bootstrap_diff([mine[k] for k in keys], [theirs[k] for k in keys])
            lines.append(f"| {look}: {selftrained} − {other}, F@0.05 | | | {_fmt(ci)} |")
    for key in ("pose_acc30", "pose_acc30_vertical", "pose_best_of_h_acc30"):
        lines.append(f"| {key} | {results['plain']['last_epoch'].get(key, float('nan')):.3f} | "
                     f"{results['photo']['last_epoch'].get(key, float('nan')):.3f} | |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "photo_collections.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
