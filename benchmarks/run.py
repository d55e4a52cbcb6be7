"""Speed benchmarks, measured side by side in one process (machines are noisy: read ratios).

    make bench            # or: .venv/bin/python benchmarks/run.py [--repeat 5]

1. pyrender throughput at the smoke image size, supersample 1 vs 2 (views/s).
2. One pre-training step (forward + backward) of the smoke model:
   FiLM with omega_0 folded into the FiLM values (ours) vs the literal formula, and the
   same number of samples placed in the object cube (ours) vs in dist ± r (the paper).
3. Mesh extraction of a smoke-sized network: dense grid vs coarse-to-fine (decoder queries and
   time at the same resolution).
4. Distillation teachers: one grouped forward per teacher (ours) vs one forward per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ss3d.cameras import Intrinsics  # noqa: E402
from ss3d.config import load_config  # noqa: E402
from ss3d.data.procedural import make_model  # noqa: E402
from ss3d.data.render import MeshRenderer  # noqa: E402
from ss3d.model import FiLMSiren, ReconstructionNet  # noqa: E402
from ss3d.stages.pretrain import render_loss  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def bench_render(repeat: int) -> None:
    cfg = load_config(None)
    mesh, _ = make_model("car", 0)
    intr = Intrinsics.from_fov(cfg.render.fov_degrees, cfg.render.image_size)
    results = {}
    for k in (1, 2):
        with MeshRenderer(intr, supersample=k) as renderer:
            scene = renderer.scene_for([mesh])

            def run(renderer=renderer, scene=scene):
                for az in range(0, 360, 30):
                    renderer.render(scene, az, 20.0, 2.0)

            results[k] = 12 / timed(run, repeat)
    print(f"render {cfg.render.image_size}px: supersample 1: {results[1]:.0f} views/s, "
          f"supersample 2: {results[2]:.0f} views/s (ratio {results[1] / results[2]:.2f}x)")


class LiteralFiLMSiren(FiLMSiren):
    """sin(omega_0 * (freq * W h + shift)) written literally (the reference formula)."""

    def forward(self, points, freq, shift):
        h = points
        for i, layer in enumerate(self.linears):
            h = torch.sin(self.omega_0 * (freq[:, i, None] * layer(h) + shift[:, i, None]))
        return self.out(h)


def bench_step(repeat: int) -> None:
    cfg = load_config(None)
    torch.manual_seed(0)
    b, k, r = cfg.optim.batch_size, cfg.pretrain.views_per_object, cfg.pretrain.rays_per_view
    size = cfg.render.image_size
    batch = {
        "image": torch.rand(b, 3, size, size),
        "azimuth": torch.rand(b, k) * 360, "elevation": torch.rand(b, k) * 150 - 75,
        "distance": torch.full((b, k), 1.9),
        "pixels": torch.rand(b, k, r, 2) * size, "rgb": torch.rand(b, k, r, 3),
        "mask": (torch.rand(b, k, r) > 0.5).float(),
    }
    intr = Intrinsics.from_fov(cfg.render.fov_degrees, size)
    timings = {}
    for label, literal, bounds in [("ours (folded FiLM, cube bounds)", False, "cube"),
                                   ("literal FiLM formula", True, "cube"),
                                   ("sphere bounds (paper)", False, "sphere")]:
        run_cfg = load_config(None, {"model.ray_bounds": bounds})
        net = ReconstructionNet(run_cfg.model)
        if literal:
            literal_decoder = LiteralFiLMSiren(run_cfg.model.latent_dim, run_cfg.model.hidden,
                                               run_cfg.model.layers, run_cfg.model.omega_0)
            literal_decoder.load_state_dict(net.decoder.state_dict())
            net.decoder = literal_decoder

        def step(net=net, run_cfg=run_cfg):
            net.zero_grad()
            render_loss(net, batch, intr, run_cfg)["loss"].backward()

        timings[label] = timed(step, repeat)
    base = timings["ours (folded FiLM, cube bounds)"]
    print(f"pre-training step (batch {b}, {k}x{r} rays, {cfg.model.n_samples} samples, "
          f"SIREN {cfg.model.layers}x{cfg.model.hidden}, {torch.get_num_threads()} threads):")
    for label, t in timings.items():
        print(f"  {label:34s} {t * 1000:7.0f} ms  ({t / base:.2f}x ours)")


def bench_mesh(repeat: int) -> None:
    from ss3d.eval.mesh import extract_mesh

    cfg = load_config(None)
    torch.manual_seed(0)
    net = ReconstructionNet(cfg.model).eval()
    with torch.no_grad():  # a field with a surface: a shifted density bias
        net.decoder.out.bias[3] = 0.6
        latent = net.encode(torch.rand(1, 3, 64, 64))

    def field(p):
        return net.query(p, latent)

    res = 65
    out = {}
    for k in (1, 2, 4):
        mesh = extract_mesh(field, res, cfg.evaluate.density_threshold, coarse_factor=k)
        t = timed(lambda k=k: extract_mesh(field, res, cfg.evaluate.density_threshold,
                                           coarse_factor=k), repeat)
        out[k] = (t, mesh.queries, mesh.faces.shape[0])
    base = out[1][0]
    print(f"mesh extraction {res}^3 (random smoke-sized network):")
    for k, (t, q, f) in out.items():
        label = "dense" if k == 1 else f"coarse-to-fine k={k}"
        print(f"  {label:22s} {t * 1000:7.0f} ms  {q:8d} queries  {f:6d} faces  "
              f"({t / base:.2f}x dense)")


def bench_teachers(repeat: int) -> None:
    from ss3d.stages.distill import TeacherPool, point_outputs, random_points

    cfg = load_config(None)
    torch.manual_seed(0)
    nets = {n: ReconstructionNet(cfg.model) for n in ("synthetic", "bird", "airplane")}
    pool = TeacherPool(nets, torch.device("cpu"))
    b = cfg.optim.batch_size
    labels = [("synthetic", "bird", "airplane")[i % 3] for i in range(b)]
    images = torch.rand(b, 3, 64, 64)
    points = random_points(b, cfg.distill.points_per_image, 0.6, torch.device("cpu"))

    def grouped():
        pool.grouped(labels, lambda net, rows: point_outputs(net, images[rows], points[rows]))

    def per_image():
        for i, name in enumerate(labels):
            pool.run(name, lambda net, i=i: point_outputs(net, images[i:i + 1],
                                                          points[i:i + 1]))

    t_grouped, t_single = timed(grouped, repeat), timed(per_image, repeat)
    print(f"distillation teachers (batch {b}, 3 teachers, {points.shape[1]} points/image): "
          f"grouped {t_grouped * 1000:.0f} ms, per image {t_single * 1000:.0f} ms "
          f"({t_single / t_grouped:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bench_render(args.repeat)
    bench_step(args.repeat)
    bench_mesh(args.repeat)
    bench_teachers(args.repeat)


if __name__ == "__main__":
    main()
