"""Figures. Each function returns a matplotlib Figure; callers log it to MLflow or show it.

No backend is forced: headless machines fall back to Agg, notebooks keep their inline one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["collection_grid", "finish_grid", "finish_plot", "metric_small_multiples",
           "render_grid"]


def finish_grid(fig: plt.Figure, axes: np.ndarray, title: str, fontsize: int = 8) -> plt.Figure:
    """Common end of an image-grid figure: no ticks, a title, tight layout, and closed so that
    notebooks show it only where the caller displays it."""
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    plt.close(fig)
    return fig


def finish_plot(fig: plt.Figure, *axes_titles: tuple[Any, str], xlabel: str = "step",
                legend: bool = True) -> plt.Figure:
    """Common end of a curves figure: each ``(axis, title)`` gets its title, the x label and a
    legend (where something is labelled); tight layout, and closed like :func:`finish_grid`."""
    for ax, title in axes_titles:
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig


def render_grid(renders_path: str | Path, models_per_category: int = 2,
                views: int = 4) -> plt.Figure:
    """Rows: a few models of every category; columns: views (RGB) then their masks."""
    with h5py.File(renders_path, "r") as f:
        n = int(f.attrs["complete_models"])
        cats = f["category"].asstr()[:n]
        rows = []
        for cat in sorted(set(cats)):
            rows.extend(np.flatnonzero(cats == cat)[:models_per_category].tolist())
        views = min(views, int(f.attrs["views_per_model"]))
        fig, axes = plt.subplots(len(rows), 2 * views, figsize=(2 * views * 1.1,
                                                                 len(rows) * 1.15),
                                 squeeze=False)
        for r, row in enumerate(rows):
            for v in range(views):
                axes[r, v].imshow(f["rgb"][row, v])
                axes[r, views + v].imshow(f["mask"][row, v], cmap="gray", vmin=0, vmax=1)
                axes[r, v].set_title(f"az {f['azimuth'][row, v]:.0f} el "
                                     f"{f['elevation'][row, v]:.0f}", fontsize=6)
            axes[r, 0].set_ylabel(f"{cats[row]}\n{f['split'].asstr()[row]}", fontsize=7)
    return finish_grid(fig, axes, "Synthetic renders: RGB views | masks", fontsize=9)


def collection_grid(collection_path: str | Path, count: int = 8) -> plt.Figure:
    """A few masked crops of a collection (top) and their masks (bottom)."""
    with h5py.File(collection_path, "r") as f:
        n = min(count, int(f.attrs["n_images"]))
        fig, axes = plt.subplots(2, n, figsize=(n * 1.2, 2.6), squeeze=False)
        for i in range(n):
            axes[0, i].imshow(f["images"][i])
            axes[1, i].imshow(f["masks"][i], cmap="gray", vmin=0, vmax=1)
            axes[0, i].set_title(f["image_ids"].asstr()[i], fontsize=6)
        title = f"{Path(collection_path).stem}: {f.attrs['n_images']} crops, " \
                f"{f.attrs['n_skipped']} skipped"
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)  # closed: notebooks show it only where the caller displays it
    return fig


def metric_small_multiples(summary: list[dict[str, Any]], metric: str = "fscore@0.05",
                           columns: int = 3, baselines: bool = True) -> plt.Figure:
    """One small panel per (set, category): each model's ``metric`` as a dot with its 95%
    bootstrap interval, models on the rows (the same order in every panel, named in the first
    column), baselines in grey. Readable at 500 px wide (5 in at 100 dpi: never scaled down in a
    page 500 px wide), unlike one bar
    strip of every category, which grows a few hundred pixels per category."""
    def is_baseline(label: str) -> bool:  # ModelKey's rule; ss3d.eval sits above this layer
        return label.startswith("baseline")

    def row_of(label: str) -> str:  # each category's own specialist shares one row
        return "self-trained" if label.startswith("selftrained") else label

    groups = sorted({(s["set"], s["category"]) for s in summary if metric in s},
                    key=lambda g: (g[0] != "collection", g[1]))
    models = [m for m in dict.fromkeys(row_of(s["model"]) for s in summary if metric in s)
              if baselines or not is_baseline(m)]
    # learned models first (pre-trained, self-trained, distilled), baselines below them
    order = {"pretrained": 0, "self-trained": 1, "distilled": 2}
    models = sorted(models, key=lambda m: (is_baseline(m), order.get(m, 3)))
    columns = max(1, min(columns, len(groups) or 1))
    rows = max(1, -(-len(groups) // columns))
    height = 0.3 + 0.15 * len(models)
    total = 0.45 + height * rows
    fig, axes = plt.subplots(rows, columns, figsize=(5.0, total), squeeze=False, sharex=True)
    lookup = {(s["set"], s["category"], row_of(s["model"])): s for s in summary}
    for k, ax in enumerate(axes.flat):
        if k >= len(groups):
            ax.axis("off")
            continue
        set_, category = groups[k]
        for y, model in enumerate(models):
            entry = lookup.get((set_, category, model))
            if entry is None or metric not in entry:
                continue
            mean = float(entry[metric])
            lo, hi = (float(entry.get(f"{metric}_{end}", mean)) for end in ("lo", "hi"))
            lo, hi = (lo if np.isfinite(lo) else mean), (hi if np.isfinite(hi) else mean)
            colour = "0.6" if is_baseline(model) else f"C{y % 10}"
            ax.plot([lo, hi], [y, y], color=colour, lw=1.6, solid_capstyle="butt")
            ax.plot([mean], [y], "o", color=colour, ms=3.5)
        ax.set_ylim(len(models) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels([m.replace("baseline: ", "") for m in models]
                           if k % columns == 0 else [], fontsize=7.5)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xticks([0, 0.5, 1], ["0", ".5", "1"])
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="x", alpha=0.3)
        short = {"synthetic": "synth.", "collection": "coll."}.get(set_, set_)
        ax.set_title(f"{category} ({short})", fontsize=8, pad=2)
    fig.suptitle(f"{metric} per category: mean and 95% interval (baselines grey)", fontsize=9)
    fig.tight_layout(pad=0.4, h_pad=0.3, w_pad=0.4, rect=(0, 0, 1, 1 - 0.25 / total))
    plt.close(fig)
    return fig
