"""Does pre-training on photo-like renders transfer to a look that no training saw?

    .venv/bin/python benchmarks/appearance_transfer.py [--config experiments/smoke.yaml]
        [--per-category 8] [--out outputs/appearance_transfer]

Two pre-trainings of the same experiment, identical but for ``render.appearance``:

* ``plain``: the experiment as configured (its own data root and MLflow experiment; its
  finished pre-training is reused, e.g. the smoke's);
* ``photo``: ``<name>-photo`` with ``render.appearance = photo`` under ``<root>-photo`` (the
  same models, splits and cameras: the generator and the camera draws are seeded alike).

Each pre-trained model is evaluated by ``ss3d transfer`` on the same test inputs under the
three looks (``plain``, ``photo``, ``heldout``). This script then pairs the two models item by
item on every look (``photo-trained − plain-trained``, bootstrap intervals), and writes
``README.md`` and ``appearance_transfer.json`` to ``--out``. A stage already finished is not
run again (delete the ``-photo`` experiment's runs to start over).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ss3d.config import load_config  # noqa: E402
from ss3d.eval.stats import paired_bootstrap_diff  # noqa: E402
from ss3d.stages.data import render_stage  # noqa: E402
from ss3d.stages.pretrain import pretrain_stage  # noqa: E402
from ss3d.stages.shell import MissingPretrainedError, find_pretrained  # noqa: E402
from ss3d.stages.transfer import LOOKS, METRICS, transfer_stage  # noqa: E402


def _pretrained(cfg) -> float:
    """Render and pre-train ``cfg`` unless a finished pre-training exists; minutes spent."""
    start = time.perf_counter()
    try:
        find_pretrained(cfg)
    except MissingPretrainedError:
        render_stage(cfg, with_collections=False)
        pretrain_stage(cfg)
    return (time.perf_counter() - start) / 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="experiments/smoke.yaml")
    parser.add_argument("--per-category", type=int, default=8,
                        help="test models per category (default: %(default)s)")
    parser.add_argument("--out", default="outputs/appearance_transfer")
    args = parser.parse_args()
    plain = load_config(args.config)
    photo = load_config(args.config, {"name": f"{plain.name}-photo",
                                      "data.root": f"{plain.data.root.rstrip('/')}-photo",
                                      "render.appearance": "photo"})
    minutes = {"plain": _pretrained(plain), "photo": _pretrained(photo)}
    rows = {}
    for trained, cfg in (("plain", plain), ("photo", photo)):
        result = transfer_stage(cfg, models_per_category=args.per_category)
        rows[trained] = [r for r in result.rows if r["model"] == "pretrained"]
    groups = {"all": lambda r: True, "seen": lambda r: not r["zero_shot"],
              "zero-shot": lambda r: r["zero_shot"]}
    table = []
    for look in LOOKS:
        for group, keep in groups.items():
            a = {(r["category"], r["key"]): r for r in rows["plain"]
                 if r["look"] == look and keep(r)}
            b = {(r["category"], r["key"]): r for r in rows["photo"]
                 if r["look"] == look and keep(r)}
            keys = sorted(a.keys() & b.keys())
            if not keys:
                continue
            entry = {"look": look, "group": group, "n": len(keys)}
            for metric in METRICS:
                mean_a = sum(a[k][metric] for k in keys) / len(keys)
                mean_b = sum(b[k][metric] for k in keys) / len(keys)
                ci = paired_bootstrap_diff([b[k][metric] for k in keys],
                                           [a[k][metric] for k in keys], seed=plain.seed)
                entry[metric] = {"plain_trained": mean_a, "photo_trained": mean_b,
                                 "difference": [ci.estimate, ci.low, ci.high]}
            table.append(entry)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "appearance_transfer.json").write_text(json.dumps(
        {"config": args.config, "per_category": args.per_category,
         "pretrain_minutes": minutes, "table": table, "rows": rows}, indent=1, default=float))

    def cell(entry: dict, metric: str) -> str:
        m = entry[metric]
        d, low, high = m["difference"]
        flag = " ✱" if low > 0 or high < 0 else ""  # the interval excludes 0
        return (f"{m['plain_trained']:.3f} | {m['photo_trained']:.3f} | "
                f"{d:+.3f} [{low:+.3f}, {high:+.3f}]{flag}")

    lines = ["# Appearance transfer: pre-trained on plain vs photo-like renders", "",
             f"`{args.config}`, {args.per_category} test models per category, the pre-trained "
             "models only; differences photo-trained − plain-trained, paired by item, 95% "
             "bootstrap intervals (✱: excludes 0).", "",
             "| test look | items | n | F@0.05 plain-trained | photo-trained | difference | "
             "mask IoU plain-trained | photo-trained | difference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        lines.append(f"| {e['look']} | {e['group']} | {e['n']} | {cell(e, 'fscore@0.05')} | "
                     f"{cell(e, 'mask_iou')} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
