"""The prior's learning curves in a prior sweep, from the MLflow store.

``benchmarks/prior_compute.py`` reads where each variant of a prior sweep ends; this reads how it
got there. Every finished child's pre-training run logs the held-out novel-view and input-view
mask IoU and the colour spread at each validation (``pretrain.val_every`` steps); this puts them
against the minutes since that run started, one line per child, so a longer schedule shows
whether it was still climbing when it stopped. Minutes are the machine's own (validation and
checkpoints included): compare only children of one sweep run side by side on one machine.

    python benchmarks/prior_curves.py experiments/sweeps/prior_steps.yaml \\
        --out reports/sweeps/prior_steps_curves.png

The store is ``$MLFLOW_TRACKING_URI`` or the repository's ``mlflow.db``
(:func:`ss3d.tracking.tracking_uri`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402
from mlflow.entities import Run  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ss3d import tracking  # noqa: E402
from ss3d.sweep import (  # noqa: E402
    TAG_UPSTREAM,
    SweepError,
    SweepSpec,
    children,
    find_parent,
    finished_child,
    load_sweep,
    stage_runs,
    upstream_runs,
)

# (metric of a pre-training run, label in the figure)
CURVES = (("val/mask_iou", "held-out novel-view mask IoU"),
          ("val/input_mask_iou", "held-out input-view mask IoU"),
          ("val/colour_spread", "colour spread (1 = the truth's)"))


def collect(spec: SweepSpec, parent: Run) -> list[dict]:
    """One entry per finished child of ``parent`` with a pre-training run: its variant, seed and,
    per metric of :data:`CURVES`, the points ``(step, minutes since the run started, value)``
    in step order (empty where the run logged none)."""
    client = MlflowClient(tracking.tracking_uri())
    upstream = [r for r in parent.data.tags.get(TAG_UPSTREAM, "").split(",") if r]
    found = []
    for child in children(spec, upstream):
        run = finished_child(parent, child)
        if run is None:
            continue
        pretrain = [r for r in stage_runs(run.info.run_id, parent.info.experiment_id)
                    if r.data.tags.get(tracking.TAG_STAGE) == "pretrain"]
        if not pretrain:
            continue
        stage = pretrain[0]  # the newest
        start = stage.info.start_time
        curves = {}
        for metric, _ in CURVES:
            history = sorted(client.get_metric_history(stage.info.run_id, metric),
                             key=lambda m: m.step)
            curves[metric] = [(m.step, (m.timestamp - start) / 60000.0, m.value)
                              for m in history]
        found.append({"variant": child.variant, "seed": child.seed, "curves": curves})
    return found


def plot(entries: list[dict], out: Path, title: str) -> None:
    """One panel per metric, minutes on a log axis; one colour per variant, one line style per
    seed, the last validation marked; the validation at step 0 is left out."""
    variants = list(dict.fromkeys(e["variant"] for e in entries))
    colour = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}
    seeds = sorted({e["seed"] for e in entries})
    style = {s: ("-", "--", ":", "-.")[i % 4] for i, s in enumerate(seeds)}
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.8), squeeze=False)
    for ax, (metric, label) in zip(axes[0], CURVES, strict=True):
        ax.set_title(label, fontsize=10)
        drawn = False
        for entry in entries:
            # step 0 (the untrained net) would stretch the log axis to seconds
            points = [(t, v) for step, t, v in entry["curves"].get(metric, [])
                      if step > 0 and t > 0 and math.isfinite(v)]
            if not points:
                continue
            drawn = True
            minutes, values = zip(*points, strict=True)
            ax.plot(minutes, values, style[entry["seed"]], color=colour[entry["variant"]],
                    lw=1.3, label=f"{entry['variant']} (seed {entry['seed']})")
            ax.scatter(minutes[-1:], values[-1:], s=18, color=colour[entry["variant"]])
        if not drawn:
            ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
            continue
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("minutes of pre-training (this machine)", fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8,
                   frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="sweep file (experiments/sweeps/*.yaml)")
    parser.add_argument("--out", default="outputs/prior_curves.png")
    args = parser.parse_args()
    try:
        spec = load_sweep(args.sweep)
        parent = find_parent(spec, upstream_runs(spec))
    except SweepError as err:
        raise SystemExit(str(err)) from None
    if parent is None:
        raise SystemExit(f"{args.sweep}: no run of this sweep in {tracking.tracking_uri()} "
                         f"(run `ss3d sweep {args.sweep}` first)")
    entries = collect(spec, parent)
    if not entries:
        raise SystemExit(f"{args.sweep}: no finished child with a pre-training run yet")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(entries, out, f"sweep {spec.name}: the prior at each validation of its pre-training")
    print("| variant | seed | validations | minutes | "
          + " | ".join(f"{label} (last)" for _, label in CURVES) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(CURVES))
    for e in entries:
        first = e["curves"][CURVES[0][0]]
        last = [e["curves"][m][-1][2] if e["curves"][m] else math.nan for m, _ in CURVES]
        print(f"| {e['variant']} | {e['seed']} | {len(first)} | "
              f"{first[-1][1] if first else math.nan:.1f} | "
              + " | ".join(f"{v:.3f}" for v in last) + " |")
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
