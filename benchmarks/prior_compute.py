"""The prior's quality against its compute, from committed sweep reports.

Each sweep of the prior (``experiments/sweeps/capacity.yaml``, ``prior_symmetry.yaml``, ...)
pre-trains and evaluates variants of the embedded default side by side on one machine. Minutes
from different sweeps ran on different machines, so every variant's compute is read as a ratio:
its child minutes over its own sweep's default, seed by seed where both ran. The figure puts
held-out mask IoU, seen and zero-shot F@0.05 against that ratio (a point per variant, the
default at 1x), and the table lists the same numbers with their seeds.

    python benchmarks/prior_compute.py reports/sweeps/capacity/sweep.json \\
        reports/sweeps/prior_symmetry/sweep.json --out reports/sweeps/prior_compute.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

# (headline metric of a sweep child, label in the figure)
# (a sweep made before a reading existed has none: nan in the table, no point in the figure)
READINGS = (("pretrain.val_mask_iou", "held-out novel-view mask IoU"),
            ("pretrain.val_input_mask_iou", "held-out input-view mask IoU"),
            ("synthetic/seen/pretrained.fscore@0.05", "seen categories' F@0.05"),
            ("synthetic/zero-shot/pretrained.fscore@0.05", "zero-shot F@0.05"))
MINUTES = "child.minutes"


def _per_seed(sweep: dict, metric: str, variant: str) -> dict[str, float]:
    for row in sweep["headline"]:
        if row["metric"] == metric and row["variant"] == variant:
            return {seed: value for seed, value in row["per_seed"].items()
                    if value is not None and math.isfinite(value)}
    return {}


def compute_points(sweep: dict) -> list[dict]:
    """One point per variant of ``sweep`` (a ``sweep.json``): its compute ratio against the
    sweep's baseline (mean over the seeds both ran, each seed's minutes over the baseline's),
    the mean of each reading over its seeds, its change against the baseline paired by seed
    (``"delta " + metric``; sweeps ran different code and machines, so the figure compares
    changes, not levels), and the seeds."""
    base = _per_seed(sweep, MINUTES, sweep["baseline"])
    points = []
    for variant in sweep["variants"]:
        minutes = _per_seed(sweep, MINUTES, variant)
        shared = sorted(set(minutes) & set(base))
        if not shared:
            continue
        point = {"sweep": sweep["name"], "variant": variant, "seeds": shared,
                 "compute": sum(minutes[s] / base[s] for s in shared) / len(shared)}
        for metric, _ in READINGS:
            values = _per_seed(sweep, metric, variant)
            point[metric] = sum(values.values()) / len(values) if values else math.nan
            ref = _per_seed(sweep, metric, sweep["baseline"])
            paired = sorted(set(values) & set(ref))
            point["delta " + metric] = (sum(values[s] - ref[s] for s in paired) / len(paired)
                                        if paired else math.nan)
        points.append(point)
    return points


def plot(points: list[dict], out: Path) -> None:
    """Small multiples, one per reading, two per row (1000 px wide at 100 dpi)."""
    rows = math.ceil(len(READINGS) / 2)
    # one colour per variant in every panel, one y range for every panel (so a change reads
    # the same size wherever it is)
    keys = sorted({(p["sweep"], p["variant"]) for p in points if p["variant"] != "default"})
    colour = {key: plt.get_cmap("tab10")(i % 10) for i, key in enumerate(keys)}
    deltas = [p["delta " + m] for p in points for m, _ in READINGS
              if math.isfinite(p["delta " + m])]
    low, high = min([-0.01, *deltas]), max([0.01, *deltas])
    pad = 0.1 * (high - low)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 3.4 * rows), squeeze=False)
    for ax, (metric, label) in zip(axes.flat, READINGS, strict=False):
        ax.set_title(f"{label}, change", fontsize=10)
        measured = [p for p in points if math.isfinite(p["delta " + metric])]
        if not measured:
            ax.text(0.5, 0.5, "not read by these sweeps", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for point in measured:
            baseline = point["variant"] == "default"
            if baseline:
                continue
            ax.scatter(point["compute"], point["delta " + metric], s=30,
                       color=colour[(point["sweep"], point["variant"])])
            ax.annotate(f"{point['variant']} ({len(point['seeds'])})",
                        (point["compute"], point["delta " + metric]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.scatter([1.0], [0.0], s=80, marker="*", color="black", zorder=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylim(low - pad, high + pad)
        ax.set_xscale("log", base=2)
        spread = [p["compute"] for p in measured]
        ax.set_xlim(min(0.5, min(spread) / 1.1), max(2.0, max(spread) * 1.2))
        ax.set_xticks([t for t in (0.5, 1, 2, 4, 8) if t <= max(2.0, max(spread) * 1.2)])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("minutes, x the default's in the same sweep", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(READINGS):]:
        ax.axis("off")
    fig.suptitle("The prior: change in quality against compute, each variant against its own "
                 "sweep's default\n(* the default; labels: variant (seeds))",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", help="sweep.json files of prior sweeps")
    parser.add_argument("--out", default="outputs/prior_compute.png")
    args = parser.parse_args()
    points = []
    for path in args.sweeps:
        try:
            points += compute_points(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"{path}: not a readable sweep report ({err})") from None
    if not points:
        raise SystemExit("no variant with minutes for itself and its baseline in "
                         + ", ".join(args.sweeps))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(points, out)
    print("| sweep | variant | seeds | compute (x default) | "
          + " | ".join(f"{label} (change)" for _, label in READINGS) + " |")
    print("|---|---|---|---:|" + "---:|" * len(READINGS))
    for p in sorted(points, key=lambda p: (p["compute"], p["sweep"])):
        print(f"| {p['sweep']} | {p['variant']} | {','.join(p['seeds'])} | {p['compute']:.2f} | "
              + " | ".join(f"{p[m]:.3f} ({p['delta ' + m]:+.3f})" for m, _ in READINGS) + " |")
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
