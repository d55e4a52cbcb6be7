"""Does pre-training on photo-like renders transfer to a look that no training saw?

    .venv/bin/python benchmarks/appearance_transfer.py [--config experiments/smoke.yaml]
        [--per-category 8] [--seeds 0 1 2] [--out outputs/appearance_transfer]

Two pre-trainings of the same experiment, identical but for ``render.appearance``:

* ``plain``: the experiment as configured (its own data root and MLflow experiment; its
  finished pre-training is reused, e.g. the smoke's);
* ``photo``: ``<name>-photo`` with ``render.appearance = photo`` under ``<root>-photo`` (the
  same models, splits and cameras: the generator and the camera draws are seeded alike).

Each pre-trained model is evaluated by ``ss3d transfer`` on the same test inputs under the
three looks (``plain``, ``photo``, ``heldout``). This script then pairs the two models item by
item on every look (``photo-trained − plain-trained``; with ``--seeds``, a pair of models per
seed, each seed under its own ``-s<seed>`` name and data root, and a seeds-then-items
bootstrap interval), and writes
``README.md`` and ``appearance_transfer.json`` to ``--out``. A stage already finished is not
run again (delete the ``-photo`` experiment's runs to start over).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ss3d.config import load_config  # noqa: E402
from ss3d.eval.seeds import paired_item_difference  # noqa: E402
from ss3d.stages.data import render_stage  # noqa: E402
from ss3d.stages.pretrain import pretrain_stage  # noqa: E402
from ss3d.stages.shell import MissingPretrainedError, find_pretrained  # noqa: E402
from ss3d.stages.transfer import GROUPS, LOOKS, METRICS, transfer_stage  # noqa: E402


def _pretrained(cfg) -> float:
    """Render and pre-train ``cfg`` unless a finished pre-training exists; minutes spent."""
    start = time.perf_counter()
    try:
        find_pretrained(cfg)
    except MissingPretrainedError:
        render_stage(cfg, with_collections=False)
        pretrain_stage(cfg)
    return (time.perf_counter() - start) / 60


def _experiments(config: str, seed: int | None):
    """The plain and photo copies of ``config`` at ``seed`` (its own seed: its own name and data
    root; another seed: ``-s<seed>`` after both, since the seed draws the models and cameras)."""
    base = load_config(config)
    suffix = "" if seed is None or seed == base.seed else f"-s{seed}"
    name, root = f"{base.name}{suffix}", f"{base.data.root.rstrip('/')}{suffix}"
    common = {"seed": base.seed if seed is None else seed}
    plain = load_config(config, {**common, "name": name, "data.root": root})
    photo = load_config(config, {**common, "name": f"{name}-photo", "data.root": f"{root}-photo",
                                 "render.appearance": "photo"})
    return plain, photo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/smoke.yaml")
    parser.add_argument("--per-category", type=int, default=8,
                        help="test models per category (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds to pre-train each copy with (default: the config's)")
    parser.add_argument("--out", default="outputs/appearance_transfer")
    args = parser.parse_args()
    seeds = args.seeds or [load_config(args.config).seed]
    minutes: dict[str, dict[str, float]] = {}
    rows: dict[int, dict[str, list[dict]]] = {}
    for seed in seeds:
        plain, photo = _experiments(args.config, seed)
        minutes[str(seed)] = {"plain": _pretrained(plain), "photo": _pretrained(photo)}
        rows[seed] = {}
        for trained, cfg in (("plain", plain), ("photo", photo)):
            result = transfer_stage(cfg, models_per_category=args.per_category)
            rows[seed][trained] = [r for r in result.rows if r["model"] == "pretrained"]
    table = []
    for look in LOOKS:
        for group, keep in GROUPS.items():
            entry: dict = {"look": look, "group": group}
            for metric in METRICS:
                per_seed, means = [], {"plain_trained": [], "photo_trained": []}
                for seed in seeds:
                    a = {(r["category"], r["key"]): r[metric] for r in rows[seed]["plain"]
                         if r["look"] == look and keep(r)}
                    b = {(r["category"], r["key"]): r[metric] for r in rows[seed]["photo"]
                         if r["look"] == look and keep(r)}
                    keys = sorted(a.keys() & b.keys())
                    per_seed.append([b[k] - a[k] for k in keys])
                    means["plain_trained"].append(float(np.mean([a[k] for k in keys])))
                    means["photo_trained"].append(float(np.mean([b[k] for k in keys])))
                width = min(len(d) for d in per_seed)
                if width == 0:
                    break
                # seeds x items (the first ``width`` items of each seed), seeds-then-items
                ci = paired_item_difference(np.array([d[:width] for d in per_seed]),
                                            seed=seeds[0])
                entry["n"] = width
                entry[metric] = {**{k: float(np.mean(v)) for k, v in means.items()},
                                 "per_seed": [float(np.mean(d)) for d in per_seed],
                                 "difference": [ci.estimate, ci.low, ci.high]}
            if "n" in entry:
                table.append(entry)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "appearance_transfer.json").write_text(json.dumps(
        {"config": args.config, "per_category": args.per_category, "seeds": seeds,
         "pretrain_minutes": minutes, "table": table,
         "rows": {str(k): v for k, v in rows.items()}}, indent=1, default=float))

    def cell(entry: dict, metric: str) -> str:
        m = entry[metric]
        d, low, high = m["difference"]
        flag = " ✱" if low > 0 or high < 0 else ""  # the interval excludes 0
        seeds_text = " / ".join(f"{v:+.3f}" for v in m["per_seed"]) if len(seeds) > 1 else ""
        return (f"{m['plain_trained']:.3f} | {m['photo_trained']:.3f} | "
                f"{d:+.3f} [{low:+.3f}, {high:+.3f}]{flag}"
                + (f" | {seeds_text}" if seeds_text else ""))

    per_seed_head = " | per seed" if len(seeds) > 1 else ""
    lines = ["# Appearance transfer: pre-trained on plain vs photo-like renders", "",
             f"`{args.config}`, seeds {', '.join(map(str, seeds))}, {args.per_category} test "
             "models per category, the pre-trained models only; differences photo-trained − "
             "plain-trained, paired by item (over seeds and items: a seeds-then-items "
             "bootstrap), 95% intervals (✱: excludes 0).", "",
             f"| test look | items | n | F@0.05 plain-trained | photo-trained | difference"
             f"{per_seed_head} | mask IoU plain-trained | photo-trained | difference"
             f"{per_seed_head} |",
             "|---|---|---|---|---|---|" + ("---|" if per_seed_head else "")
             + "---|---|---|" + ("---|" if per_seed_head else "")]
    for e in table:
        lines.append(f"| {e['look']} | {e['group']} | {e['n']} | {cell(e, 'fscore@0.05')} | "
                     f"{cell(e, 'mask_iou')} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
