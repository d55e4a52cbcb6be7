"""Speed benchmarks, measured side by side in one process (machines are noisy: read ratios).

    make bench            # or: .venv/bin/python benchmarks/run.py [--repeat 5] [--only step]

1. pyrender throughput at the smoke image size, supersample 1 vs 2 (views/s).
2. One pre-training step (forward + backward + Adam) at smoke and paper sizes, the levers added
   one at a time from the baseline (plain autograd FiLM-SIREN layers, fp32, foreach Adam: the
   implementation before the speed work) to today's default (fused layers, bf16 autocast where
   the CPU or GPU has it, fused Adam). Rounds are interleaved so that machine noise hits every
   variant alike; seconds per step, ray-samples per second and the ratio to the baseline.
3. A paper-size self-training step (H = 10 hypotheses, batch 8): one camera-search iteration
   and one phase-B network update, time and peak memory, baseline vs today's default, each in
   its own process (peak resident memory on CPU, peak allocated memory on CUDA).
4. Ray bounds: samples in the object cube (ours) vs in dist ± r (the paper), smoke step.
5. Mesh extraction of a smoke-sized network: dense grid vs coarse-to-fine.
6. Distillation teachers: one grouped forward per teacher (ours) vs one forward per image.
7. Ground-truth occupancy (the render stage's inside/outside labels): winding numbers of
   4096 points against the world's largest procedural meshes (mug, bowl, motorbike) and a
   small one (chair), with the corners as ``(chunk, F, 3)`` vectors in chunks of 64 (before)
   and as ``geometry.winding_number`` lays them out (nine coordinate rows), one thread.
8. The command line: ``ss3d --help`` wall time and peak memory (a fresh process each time), and
   ``ss3d reconstruct`` of one 512-px photo (process start to mesh on disk, peak memory), then
   many photos with one loaded model (photos per second after loading). The model is a freshly
   initialised smoke-size network (``evaluate.peak_fraction`` 0.5, so that it has a surface):
   the cost does not depend on the weights.
9. The CPU allocator (``ss3d.allocator``): the default smoke pre-training step with glibc's
   malloc as ss3d sets it (large blocks kept in the heap) against glibc's defaults
   (``SS3D_MALLOC=default``: every large block mapped, zero-filled and unmapped again),
   each in its own process, alternating; seconds, page faults and system time per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ss3d.cameras import Intrinsics  # noqa: E402
from ss3d.config import load_config  # noqa: E402
from ss3d.data.procedural import make_model  # noqa: E402
from ss3d.data.render import MeshRenderer  # noqa: E402
from ss3d.engine import amp_dtype, autocast, make_adam, select_device  # noqa: E402
from ss3d.model import ReconstructionNet  # noqa: E402
from ss3d.stages.pretrain import pretrain_loss  # noqa: E402

# The paper's sizes (experiments/paper.yaml): ResNet-34 on 224 px, FiLM-SIREN 5 x 256,
# 5 views x 340 rays x 80 samples per object.
PAPER = {"model.encoder": "resnet34", "model.encoder_size": 224, "model.latent_dim": 512,
         "model.hidden": 256, "model.layers": 5, "model.n_samples": 80,
         "model.ray_bounds": "sphere", "pretrain.views_per_object": 5,
         "pretrain.rays_per_view": 340, "render.image_size": 224}
SIZES = {"smoke": ({}, None), "paper": (PAPER, 1)}  # overrides, batch size (None: config's)


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


@dataclass
class Variant:
    label: str
    fused_layers: bool
    amp: bool
    fused_adam: bool


# cumulative: each row adds one lever to the row above
VARIANTS = [
    Variant("baseline (plain layers, fp32)", False, False, False),
    Variant("+ bf16 autocast", False, True, False),
    Variant("+ fused FiLM-SIREN layers", True, True, False),
    Variant("+ fused Adam (default)", True, True, True),
    Variant("default without autocast", True, False, True),
]


def synthetic_batch(cfg, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A pre-training batch of the config's sizes (random content: timing only)."""
    g = torch.Generator().manual_seed(0)
    b, k, r = batch_size, cfg.pretrain.views_per_object, cfg.pretrain.rays_per_view
    size = cfg.render.image_size
    batch = {"image": torch.rand(b, 3, size, size, generator=g),
             "azimuth": torch.rand(b, k, generator=g) * 360,
             "elevation": torch.rand(b, k, generator=g) * 150 - 75,
             "distance": torch.full((b, k), 1.9),
             "pixels": torch.rand(b, k, r, 2, generator=g) * size,
             "rgb": torch.rand(b, k, r, 3, generator=g),
             "mask": (torch.rand(b, k, r, generator=g) > 0.5).float()}
    return {key: v.to(device) for key, v in batch.items()}


def pretrain_step(cfg, batch_size: int, device: torch.device, variant: Variant
                  ) -> tuple[Callable[[], None], int]:
    """One pre-training step (forward, backward, Adam) of a seeded network on a synthetic batch,
    with ``variant``'s autocast and Adam (its layers come from ``cfg``), and its ray-samples."""
    torch.manual_seed(0)
    net = ReconstructionNet(cfg.model).to(device)
    opt = (make_adam(net.parameters(), 1e-4) if variant.fused_adam
           else torch.optim.Adam(net.parameters(), lr=1e-4, foreach=True))
    batch = synthetic_batch(cfg, batch_size, device)
    intr = Intrinsics.from_fov(cfg.render.fov_degrees, cfg.render.image_size)

    def step() -> None:
        with autocast(device, variant.amp):
            loss = pretrain_loss(net, batch, intr, cfg)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    samples = (batch_size * cfg.pretrain.views_per_object * cfg.pretrain.rays_per_view
               * cfg.model.n_samples)
    return step, samples


def bench_step(repeat: int, sizes: list[str], device: torch.device) -> dict:
    """Pre-training step time of each :data:`VARIANTS` entry, interleaved rounds."""
    results = {}
    native = amp_dtype(device) is not None
    for size in sizes:
        overrides, batch_size = SIZES[size]
        steps = {}
        for v in VARIANTS:
            if v.amp and not native:
                continue  # no bf16/fp16 here: autocast would be a no-op, the row a duplicate
            cfg = load_config(None, {**overrides, "model.fused_layers": v.fused_layers})
            step, samples = pretrain_step(cfg, batch_size or cfg.optim.batch_size, device, v)
            step()  # warm-up (allocator, oneDNN kernels)
            steps[v.label] = (step, samples, [])
        for _ in range(repeat):  # interleaved: noise hits every variant alike
            for _label, (step, _samples, times) in steps.items():
                tic = time.perf_counter()
                step()
                times.append(time.perf_counter() - tic)
        cfg = load_config(None, overrides)
        print(f"pre-training step, {size} size (batch {batch_size or cfg.optim.batch_size}, "
              f"{cfg.pretrain.views_per_object}x{cfg.pretrain.rays_per_view} rays x "
              f"{cfg.model.n_samples} samples, SIREN {cfg.model.layers}x{cfg.model.hidden}, "
              f"{cfg.model.encoder}, {device}, {torch.get_num_threads()} threads, "
              f"median of {repeat}):")
        base = statistics.median(steps[VARIANTS[0].label][2])
        results[size] = {}
        for label, (_step, samples, times) in steps.items():
            t = statistics.median(times)
            results[size][label] = {"seconds": t, "ratio": base / t}
            print(f"  {label:32s} {t * 1000:8.0f} ms  {samples / t / 1e6:6.2f} M samples/s  "
                  f"{base / t:5.2f}x baseline")
        if not native:
            print("  (no native bf16/fp16 on this device: autocast rows skipped)")
    return results


def selftrain_child(variant: str, device_name: str, b: int = 8) -> None:
    """One paper-size self-training step in this process; prints a JSON line."""
    from ss3d.hypotheses import CameraBank
    from ss3d.scoring import gather_targets, hypothesis_losses, sample_image_pixels

    device = torch.device(device_name)
    v = {"baseline": VARIANTS[0], "default": VARIANTS[3]}[variant]
    cfg = load_config(None, {**PAPER, "model.fused_layers": v.fused_layers,
                             "optim.amp": v.amp, "selftrain.hypotheses": 10,
                             "selftrain.camera_rays": 340, "selftrain.camera_samples": 40})
    s, h = cfg.selftrain, cfg.selftrain.hypotheses
    torch.manual_seed(0)
    net = ReconstructionNet(cfg.model).to(device)
    opt = (make_adam(net.parameters(), 1e-5) if v.fused_adam
           else torch.optim.Adam(net.parameters(), lr=1e-5, foreach=True))
    images = torch.rand(b, 3, 224, 224, device=device)
    masks = (torch.rand(b, 1, 224, 224, device=device) > 0.5).float()
    intr = Intrinsics.from_fov(cfg.render.fov_degrees, 224)
    bank = CameraBank([str(i) for i in range(b)], h)
    raw = [r.to(device).requires_grad_(True) for r in bank.raw(torch.arange(b))]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)

    sync()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.no_grad():
        latent = net.encode(images)
    # 1. one camera-search iteration: B x H cameras, network frozen, gradient to the cameras
    tic = time.perf_counter()
    net.requires_grad_(False)
    pixels = sample_image_pixels(masks.cpu(), s.camera_rays).to(device)
    t_rgb, t_mask = gather_targets(images, masks, pixels)
    losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, *bank.decode(*raw), intr,
                               cfg, s.camera_samples)
    losses.sum().backward()
    net.requires_grad_(True)
    sync()
    camera_seconds = time.perf_counter() - tic
    # 2. one phase-B update: the network on the weighted loss of all B x H hypotheses
    tic = time.perf_counter()
    with autocast(device, cfg.optim.amp):
        latent = net.encode(images)
    pixels = sample_image_pixels(masks.cpu(), s.rays_per_image).to(device)
    t_rgb, t_mask = gather_targets(images, masks, pixels)
    cams = [c.detach() for c in bank.decode(*raw)]
    losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, *cams, intr, cfg,
                               cfg.model.n_samples)
    loss = (torch.full((b, h), 1.0 / h, device=device) * losses).sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    print(json.dumps({"camera_seconds": camera_seconds,
                      "network_seconds": time.perf_counter() - tic, "peak_bytes": peak,
                      "points_camera": b * h * s.camera_rays * s.camera_samples,
                      "points_network": b * h * s.rays_per_image * cfg.model.n_samples}))


def _selftrain_run(variant: str, device: torch.device, batch: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--selftrain-child", variant,
                           "--selftrain-batch", str(batch), "--device", str(device)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        reason = ("killed: out of memory" if proc.returncode in (-9, 137)
                  else (proc.stderr.strip().splitlines() or ["failed"])[-1])
        print(f"  batch {batch}, {variant:9s} did not finish ({reason})", flush=True)
        return {"error": reason}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    memory = "peak allocated" if device.type == "cuda" else "peak resident (above start)"
    print(f"  batch {batch}, {variant:9s} camera-search iteration {out['camera_seconds']:6.2f} s, "
          f"phase-B update {out['network_seconds']:6.2f} s, {memory} "
          f"{out['peak_bytes'] / 2**30:5.2f} GiB", flush=True)
    return out


def bench_selftrain(device: torch.device) -> dict:
    """Paper-size self-training step, baseline vs default, each in a fresh process.

    Batch 8 first; where either variant does not fit in memory, both again at batch 2 so that
    there is a side-by-side ratio.
    """
    print("paper-size self-training step (H = 10, 224 px, SIREN 5x256; camera search 340 rays "
          "x 40 samples, phase B 256 rays x 80 samples), one process per variant:", flush=True)
    results = {}
    for batch in (8, 2):
        runs = {variant: _selftrain_run(variant, device, batch)
                for variant in ("default", "baseline")}
        results[f"batch_{batch}"] = runs
        if all("camera_seconds" in r for r in runs.values()):
            d, b = runs["default"], runs["baseline"]
            print(f"  batch {batch}, default vs baseline: camera iteration "
                  f"{b['camera_seconds'] / d['camera_seconds']:.2f}x faster, phase B "
                  f"{b['network_seconds'] / d['network_seconds']:.2f}x faster, peak memory "
                  f"{b['peak_bytes'] / max(d['peak_bytes'], 1):.2f}x smaller")
            break
    return results


def bench_bounds(repeat: int) -> None:
    cfg = load_config(None)
    batch = synthetic_batch(cfg, cfg.optim.batch_size, torch.device("cpu"))
    intr = Intrinsics.from_fov(cfg.render.fov_degrees, cfg.render.image_size)
    timings = {}
    for bounds in ("cube", "sphere"):
        run_cfg = load_config(None, {"model.ray_bounds": bounds})
        torch.manual_seed(0)
        net = ReconstructionNet(run_cfg.model)

        def step(net=net, run_cfg=run_cfg):
            net.zero_grad()
            with autocast(torch.device("cpu")):
                loss = pretrain_loss(net, batch, intr, run_cfg)["loss"]
            loss.backward()

        timings[bounds] = timed(step, repeat)
    print(f"ray bounds, smoke step (same samples per ray): cube {timings['cube'] * 1000:.0f} ms, "
          f"sphere (paper) {timings['sphere'] * 1000:.0f} ms "
          f"({timings['sphere'] / timings['cube']:.2f}x; the cube puts every sample where the "
          f"object can be)")


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


def _winding_number_vectors(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                            chunk: int = 64) -> torch.Tensor:
    """The baseline: ``geometry.winding_number`` as it was before its coordinate-row layout,
    corners as ``(chunk, F, 3)`` vectors (norms, cross and dot products over a dimension of 3)."""
    tri = vertices[faces]
    out = []
    for start in range(0, points.shape[0], chunk):
        p = points[start:start + chunk]
        a, b, c = (tri[None, :, k] - p[:, None] for k in range(3))
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        denom = (la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la
                 + (c * a).sum(-1) * lb)
        out.append(torch.atan2(det, denom).sum(-1) / (2 * torch.pi))
    return torch.cat(out)


def bench_occupancy(repeat: int) -> None:
    import numpy as np

    from ss3d.geometry import winding_number

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a render worker process
    points = torch.as_tensor(np.random.default_rng(0).uniform(-0.55, 0.55, (4096, 3)))
    print("ground-truth occupancy, 4096 points, one thread ((chunk, F, 3) vectors in chunks of "
          "64 = before, vs geometry.winding_number):")
    for category in ("mug", "bowl", "motorbike", "chair"):
        mesh, _ = make_model(category, 0)
        vertices = torch.as_tensor(mesh.vertices, dtype=torch.float64)
        faces = torch.as_tensor(mesh.faces, dtype=torch.long)
        before = _winding_number_vectors(points, vertices, faces)
        now = winding_number(points, vertices, faces)
        same = torch.equal(before.abs() > 0.5, now.abs() > 0.5)
        times = {name: timed(lambda fn=fn, v=vertices, f=faces: fn(points, v, f),
                             min(repeat, 2))  # seconds per call: two are enough for the ratio
                 for name, fn in (("before", _winding_number_vectors), ("now", winding_number))}
        print(f"  {category:10s} {len(faces):5d} faces  before {times['before'] * 1000:6.0f} ms  "
              f"now {times['now'] * 1000:6.0f} ms  ({times['before'] / times['now']:.2f}x; "
              f"labels equal: {same}, largest |difference| "
              f"{float((before - now).abs().max()):.1e})")
    torch.set_num_threads(threads)


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


# Runs a command and reports its peak memory. The command is started from this small process,
# not from the benchmark (a fork of a process that holds torch would count its pages).
_PEAK = ("import resource, subprocess, sys\n"
         "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(code)")


def _child_run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one fresh process running ``cmd``."""
    tic = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-2000:]}")
    return seconds, int(out.stderr.strip().splitlines()[-1]) / 1024  # KB on Linux


def _photo_set(folder: Path, count: int, size: int = 512) -> list[tuple[Path, Path]]:
    """``count`` photos of procedural cars at ``size`` px (pyrender) with their masks."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    intr = Intrinsics.from_fov(40.0, size)
    pairs = []
    with MeshRenderer(intr) as renderer:
        for k in range(count):
            mesh, _ = make_model("car", k)
            rgb, mask, _ = renderer.render(renderer.scene_for([mesh]), 30.0 * k, 20.0, 2.0)
            image, mask_path = folder / f"photo_{k}.jpg", folder / f"photo_{k}.png"
            cv2.imwrite(str(image), rgb[..., ::-1])
            cv2.imwrite(str(mask_path), mask.astype("uint8") * 255)
            pairs.append((image, mask_path))
    return pairs


def bench_cli(repeat: int, model: Path | None = None) -> dict:
    """``ss3d --help`` and ``ss3d reconstruct``: latency and peak memory of fresh processes;
    then photos per second with one loaded model, the input camera searched exactly (every
    pose-grid camera at full size) and coarse to fine (``evaluate.camera_refine``), rounds
    interleaved."""
    import tempfile

    from ss3d.config import to_dict
    from ss3d.engine import save_checkpoint
    from ss3d.reconstruct import Reconstructor

    ss3d = str(Path(sys.executable).parent / "ss3d")
    helps = [_child_run([ss3d, "--help"]) for _ in range(repeat)]
    help_s = statistics.median(h[0] for h in helps)
    help_mb = max(h[1] for h in helps)
    print(f"ss3d --help: {help_s:.2f} s, peak {help_mb:.0f} MB (median of {repeat} processes)")
    with tempfile.TemporaryDirectory(prefix="ss3d-bench-") as tmp:
        tmp = Path(tmp)
        if model is None:  # a seeded random network: the same surface (and cost) every run
            cfg = load_config(None, {"evaluate.peak_fraction": 0.5})
            torch.manual_seed(0)
            net = ReconstructionNet(cfg.model).eval()
            ckpt = save_checkpoint(tmp / "model.pt", stage="pretrain", step=0,
                                   config=to_dict(cfg), model=net)
            extra = ["--set", "evaluate.peak_fraction=0.5"]
        else:
            cfg, ckpt, extra = load_config(None), model, []
        pairs = _photo_set(tmp / "photos", 8)
        one = [_child_run([ss3d, "reconstruct", str(pairs[0][0]), "--mask", str(pairs[0][1]),
                           "--model", str(ckpt), "-o", str(tmp / "one.obj"), *extra])
               for _ in range(max(1, repeat // 2))]
        one_s, one_mb = statistics.median(o[0] for o in one), max(o[1] for o in one)
        tic = time.perf_counter()
        job = Reconstructor(str(ckpt), cfg)
        load_s = time.perf_counter() - tic
        faces = job.mesh(*pairs[0])[0].faces.shape[0]  # warm-up
        refines = {"exact": 0, "coarse-to-fine": cfg.evaluate.camera_refine}
        times = {label: [] for label in refines}
        for _ in range(max(1, repeat // 2)):
            for label, refine in refines.items():
                job.cfg.evaluate.camera_refine = refine
                tic = time.perf_counter()
                for image, mask in pairs:
                    job.write(job.mesh(image, mask)[0], tmp / f"{image.stem}.obj", None)
                times[label].append((time.perf_counter() - tic) / len(pairs))
        per_photo = {label: statistics.median(t) for label, t in times.items()}
    rates = {label: 1 / t for label, t in per_photo.items()}
    print(f"ss3d reconstruct ({'a seeded random network' if model is None else model}, "
          f"{faces} faces on the first photo), one 512-px photo: {one_s:.2f} s from process "
          f"start, peak {one_mb:.0f} MB; many photos: model load {load_s:.2f} s, then")
    for label, rate in rates.items():
        print(f"  input camera {label:15s} {rate:.1f} photos/s ({per_photo[label] * 1000:.0f} "
              f"ms each; {per_photo['exact'] / per_photo[label]:.2f}x exact)")
    return {"help_seconds": help_s, "help_peak_mb": help_mb, "reconstruct_one_seconds": one_s,
            "reconstruct_one_peak_mb": one_mb,
            "reconstruct_photos_per_second": rates["coarse-to-fine"],
            "reconstruct_photos_per_second_exact_camera": rates["exact"]}


def allocator_child(steps: int) -> None:
    """Default smoke pre-training steps in this process; prints a JSON line: median seconds,
    minor page faults and system seconds per step (the allocator is the process's own)."""
    cfg = load_config(None)
    step, _samples = pretrain_step(cfg, cfg.optim.batch_size, torch.device("cpu"),
                                   VARIANTS[3])  # the default
    step()  # warm-up
    rows = []
    for _ in range(steps):
        before, tic = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        after = resource.getrusage(resource.RUSAGE_SELF)
        rows.append((time.perf_counter() - tic, after.ru_minflt - before.ru_minflt,
                     after.ru_stime - before.ru_stime))
    print(json.dumps({key: statistics.median(r[k] for r in rows)
                      for k, key in enumerate(("seconds", "faults", "system_seconds"))}))


def bench_allocator(repeat: int) -> dict:
    """The smoke step with ss3d's allocator setting against glibc's defaults, each variant in
    fresh processes, alternating, ``repeat`` rounds of 3 steps; medians over rounds."""
    print("CPU allocator, smoke pre-training step (default variant), one process per round:",
          flush=True)
    runs: dict[str, list[dict]] = {"ss3d (large blocks kept)": [], "glibc defaults": []}
    for _ in range(repeat):
        for label, flag in zip(runs, ("", "default"), strict=True):
            out = subprocess.run([sys.executable, __file__, "--allocator-child", "3"],
                                 env={**os.environ, "SS3D_MALLOC": flag}, check=True,
                                 capture_output=True, text=True)
            runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {label: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for label, rows in runs.items()}
    base = results["glibc defaults"]["seconds"]
    for label, r in results.items():
        print(f"  {label:28s} {r['seconds'] * 1000:6.0f} ms  {r['faults']:8.0f} page faults  "
              f"{r['system_seconds'] * 1000:5.0f} ms system  {base / r['seconds']:5.2f}x")
    return results


SECTIONS = ("render", "step", "selftrain", "bounds", "mesh", "occupancy", "teachers", "cli",
            "allocator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES),
                        help="Sizes of the pre-training step section.")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:N'.")
    parser.add_argument("--model", type=Path, help="The command-line section's model: a "
                        "checkpoint (e.g. outputs/smoke/distill/last.pt) instead of a seeded "
                        "random network, whose meshes are larger than a trained model's.")
    parser.add_argument("--json", type=Path, help="Also write the step and self-training "
                        "figures to this JSON file.")
    parser.add_argument("--selftrain-child", choices=("baseline", "default"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--selftrain-batch", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--allocator-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = select_device(args.device)
    if args.selftrain_child:
        selftrain_child(args.selftrain_child, str(device), args.selftrain_batch)
        return
    if args.allocator_child:
        allocator_child(args.allocator_child)
        return
    print(f"ss3d benchmarks on {device} ({torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, autocast dtype {amp_dtype(device)})", flush=True)
    figures = {}
    if "render" in args.only:
        bench_render(args.repeat)
    if "step" in args.only:
        figures["step"] = bench_step(args.repeat, args.sizes, device)
    if "selftrain" in args.only:
        figures["selftrain"] = bench_selftrain(device)
    if "bounds" in args.only:
        bench_bounds(args.repeat)
    if "mesh" in args.only:
        bench_mesh(args.repeat)
    if "occupancy" in args.only:
        bench_occupancy(args.repeat)
    if "teachers" in args.only:
        bench_teachers(args.repeat)
    if "cli" in args.only:
        figures["cli"] = bench_cli(args.repeat, args.model)
    if "allocator" in args.only:
        figures["allocator"] = bench_allocator(args.repeat)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
