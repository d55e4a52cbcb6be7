"""How much do the procedural categories vary? Medoid vs oracle baselines per category.

    .venv/bin/python benchmarks/category_variation.py [--count 40] [--train 28]
    .venv/bin/python benchmarks/category_variation.py --module /tmp/procedural_orig.py
    .venv/bin/python benchmarks/category_variation.py --fast --seeds 0 1 2 3 4 5

(``--module`` takes a single-file generator, as the package was before it became
``ss3d/data/procedural/``: ``git show 0bc7a6c:ss3d/data/procedural.py > /tmp/procedural_orig.py``;
to measure a later one, run this script with ``PYTHONPATH`` set to that checkout.)
About 2 minutes on 2 CPU cores; ``--fast`` (KD-tree F-scores, the same formula) takes 20 s per
seed.

For each category, ``count`` instances (indices 0..count-1) are normalised like
``ss3d.data.shapenet.load_model`` (bounding-box centre at the origin, longest side 1) and
``--points`` surface points are sampled from each. The first ``--train`` instances are the
training shapes, the rest the test shapes.

* medoid: the training shape with the least mean Chamfer-L1 to the other training shapes (the
  evaluation's "category medoid" baseline), used as the prediction for every test shape;
* oracle: for each test shape, the training shape with the best F@0.05 (an upper bound for a
  retrieval model that reads the image perfectly);
* pairwise: mean Chamfer-L1 over all pairs of instances;
* gen ms/model: ``make_model`` time.

With 12 test shapes and 28 candidates one seed's medoid number moves by about ±0.1 (the
medoid is one draw); ``--seeds`` averages several draws of the same generator.

F-scores come from ``ss3d.eval.metrics.chamfer_fscore`` so the numbers match the evaluation.
A category whose medoid scores high measures recognition, not reconstruction (Tatarchenko et
al., CVPR 2019): the goal is medoid F@0.05 <= 0.6 with the oracle clearly above it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ss3d.eval.metrics import chamfer_fscore  # noqa: E402
from ss3d.geometry import merge_meshes, sample_surface  # noqa: E402


def load_generator(path: str | None) -> ModuleType:
    """``ss3d.data.procedural`` or the module at ``path`` (e.g. an older copy of it)."""
    if path is None:
        import ss3d.data.procedural as module

        return module
    spec = importlib.util.spec_from_file_location("procedural_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def surface_points(gen: ModuleType, category: str, index: int, points: int,
                   seed: int = 0) -> np.ndarray:
    """Surface samples of one instance in the canonical cube (like ``load_model``)."""
    mesh, _ = gen.make_model(category, index, seed=seed)
    mesh = merge_meshes([mesh])
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / float(np.max(hi - lo)))
    return sample_surface(mesh, points, seed=index)


def nearest_distances(clouds: list[np.ndarray]) -> list[list[np.ndarray]]:
    """``d[i][j]``: distance of every point of cloud ``i`` to its nearest point of cloud ``j``.

    KD-trees (exact, like the evaluation's brute-force KNN but much faster on a CPU).
    """
    trees = [cKDTree(c) for c in clouds]
    return [[trees[j].query(ci)[0] for j in range(len(clouds))] for ci in clouds]


def fscore(d_pred: np.ndarray, d_true: np.ndarray, t: float = 0.05) -> float:
    """F@t from nearest distances (the formula of ``chamfer_fscore``)."""
    precision, recall = float((d_pred < t).mean()), float((d_true < t).mean())
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def measure(gen: ModuleType, category: str, count: int, train: int, points: int,
            fast: bool = False, seed: int = 0) -> dict[str, float]:
    tic = time.perf_counter()
    for i in range(count):
        gen.make_model(category, i, seed=seed)
    gen_ms = 1000 * (time.perf_counter() - tic) / count
    clouds = [surface_points(gen, category, i, points, seed) for i in range(count)]
    near = nearest_distances(clouds)
    chamfer = np.array([[0.5 * (near[i][j].mean() + near[j][i].mean()) for j in range(count)]
                        for i in range(count)])
    # the medoid minimises the mean Chamfer-L1 to the other training shapes
    medoid = int(chamfer[:train, :train].sum(1).argmin())
    med_f, oracle_f = [], []
    for t in range(train, count):
        if fast:
            scores = [fscore(near[j][t], near[t][j]) for j in range(train)]
        else:
            truth = torch.from_numpy(clouds[t])
            scores = [chamfer_fscore(torch.from_numpy(clouds[j]), truth, (0.05,))["fscore@0.05"]
                      for j in range(train)]
        med_f.append(scores[medoid])
        oracle_f.append(max(scores))
    off_diagonal = chamfer[~np.eye(count, dtype=bool)]
    return {"medoid": float(np.mean(med_f)), "oracle": float(np.mean(oracle_f)),
            "pairwise": float(off_diagonal.mean()), "medoid_index": medoid, "gen_ms": gen_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", default=None,
                        help="path of a single-file procedural.py to measure (default: "
                             "ss3d.data.procedural)")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--train", type=int, default=28)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--categories", nargs="*", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="generator seeds; with several, each row is the mean over them "
                             "(12 test shapes make one seed's numbers noisy)")
    parser.add_argument("--fast", action="store_true",
                        help="F-scores from KD-tree distances instead of chamfer_fscore "
                             "(same formula; for quick iterations)")
    args = parser.parse_args()
    gen = load_generator(args.module)
    categories = args.categories or list(gen.PROCEDURAL_CATEGORIES)
    seeds = ", ".join(map(str, args.seeds))
    print(f"{args.count} instances per category (seed {seeds}), first {args.train} = training, "
          f"{args.points} surface points each; generator: {args.module or gen.__name__}")
    header = (f"{'category':<10} {'medoid F@0.05':>13} {'oracle F@0.05':>13} "
              f"{'gap':>6} {'pairwise CD-L1':>14} {'gen ms/model':>12}")
    print(header)
    print("-" * len(header))
    for category in categories:
        runs = [measure(gen, category, args.count, args.train, args.points, args.fast, seed)
                for seed in args.seeds]
        r = {k: float(np.mean([run[k] for run in runs])) for k in runs[0]}
        spread = ""
        if len(runs) > 1:
            spread = "   medoid per seed: " + " ".join(f"{run['medoid']:.2f}" for run in runs)
        print(f"{category:<10} {r['medoid']:>13.3f} {r['oracle']:>13.3f} "
              f"{r['oracle'] - r['medoid']:>6.3f} {r['pairwise']:>14.4f} {r['gen_ms']:>12.1f}"
              f"{spread}", flush=True)


if __name__ == "__main__":
    main()
