"""Figures. Each function returns a matplotlib Figure; callers log it to MLflow or show it.

No backend is forced: headless machines fall back to Agg, notebooks keep their inline one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["collection_grid", "finish_grid", "finish_plot", "render_grid"]


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
