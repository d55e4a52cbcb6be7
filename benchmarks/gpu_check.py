"""GPU self-check: every stage at tiny size on the device, both mixed precisions, torchrun, and
the paper-size step times and peak memory; one JSON file of results.

    make gpu-check                                # on a GPU node: about 5 minutes on one H100
    .venv/bin/python benchmarks/gpu_check.py --out outputs/gpu-check.json [--device cuda:1]
    .venv/bin/python benchmarks/gpu_check.py --dry-run    # CPU: what runs without CUDA (CI)

Checks, each recorded as passed / failed / skipped (with the reason) and its seconds:

1. ``environment``: torch and CUDA versions, the device, bf16 support, memory.
2. ``fused layer``: the fused FiLM-SIREN layer against the plain one on the device, fp32 and
   under autocast.
3. ``tiny stages, <precision>``: render → pre-train → self-train → distil → evaluate at tiny
   size through the library, tracked in a temporary MLflow store, once per precision: bf16
   autocast and fp16 autocast + GradScaler (``SS3D_CUDA_AMP``) on CUDA; the CPU's own
   precision in a dry run (fp16 needs CUDA and is skipped).
4. ``torchrun``: tiny pre-training, self-training and distillation under ``torchrun
   --standalone`` with one process per GPU (one on a CPU).
5. ``paper-size steps``: ``benchmarks/run.py``'s pre-training step (every speed lever) and
   self-training step (H = 10, batch 8, peak memory). Skipped in a dry run (minutes per step
   on a CPU; ``make bench`` measures them there).

The exit status is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ss3d.config import format_set_args, load_config  # noqa: E402
from ss3d.engine import amp_dtype, select_device  # noqa: E402

# Small enough for a CPU in a minute, large enough that every stage does real work.
TINY = {
    "data.categories": ["car", "airplane"], "data.heldout_categories": ["chair"],
    "data.models_per_category": 4, "data.collections": ["bird"],
    "data.images_per_collection": 8, "data.collection_instances": 4,
    "data.collection_image_size": 48, "data.crop_size": 32,
    "render.image_size": 32, "render.views_per_model": 3, "render.surface_samples": 256,
    "render.volume_samples": 256, "model.encoder_size": 32, "model.latent_dim": 32,
    "model.hidden": 32, "model.layers": 2, "model.n_samples": 12, "optim.batch_size": 4,
    "pretrain.steps": 6, "pretrain.val_every": 3, "pretrain.checkpoint_every": 3,
    "pretrain.val_models": 2, "pretrain.val_views": 1, "pretrain.rays_per_view": 64,
    "selftrain.epochs": 2, "selftrain.phase_a_epochs": 1, "selftrain.camera_steps": 2,
    "selftrain.hypotheses": 2, "selftrain.camera_rays": 32, "selftrain.rays_per_image": 64,
    "selftrain.grid_azimuths": 4, "selftrain.ablation": False, "distill.steps": 3,
    "distill.points_per_image": 512, "evaluate.models_per_category": 1,
    "evaluate.collection_images": 2, "evaluate.mesh_resolution": 16,
}


class Checks:
    """Runs named checks, records status, seconds and details, never stops at a failure.

    The JSON at ``out`` is rewritten (atomically) after every check, so a run killed at its
    time limit still leaves the checks it finished."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.results: list[dict[str, Any]] = []
        self.out = out
        self.header = header

    def write(self) -> None:
        report = {**self.header, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "checks": self.results}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = self.out.with_name(self.out.name + ".tmp")
        tmp_out.write_text(json.dumps(report, indent=2, default=str))
        tmp_out.replace(self.out)

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        print(f"[gpu-check] {name} ...", flush=True)
        tic = time.perf_counter()
        try:
            detail = fn() or {}
            status = "passed"
        except Exception as err:  # a check's failure is a result, not the end of the run
            detail = {"error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc(limit=-12)}
            status = "failed"
        seconds = time.perf_counter() - tic
        self.results.append({"name": name, "status": status, "seconds": round(seconds, 2),
                             **detail})
        print(f"[gpu-check] {name}: {status} in {seconds:.1f} s"
              + (f" ({detail['error']})" if status == "failed" else ""), flush=True)
        self.write()

    def skip(self, name: str, reason: str) -> None:
        self.results.append({"name": name, "status": "skipped", "reason": reason})
        print(f"[gpu-check] {name}: skipped ({reason})", flush=True)
        self.write()


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "device": str(device), "threads": torch.get_num_threads(),
                            "autocast_dtype": str(amp_dtype(device))}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(cuda=torch.version.cuda, gpu=props.name,
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported(),
                    capability=f"{props.major}.{props.minor}")
    return info


def fused_layer(device: torch.device) -> dict[str, Any]:
    from ss3d.fused import film_sine, film_sine_reference

    g = torch.Generator().manual_seed(0)
    b, n, i, o = 4, 4096, 64, 64
    tensors = [torch.rand(b, n, i, generator=g) * 2 - 1, torch.randn(o, i, generator=g) / 8,
               torch.randn(o, generator=g) * 0.1, 30 * (1 + 0.2 * torch.randn(b, o, generator=g)),
               6 * torch.randn(b, o, generator=g)]
    upstream = torch.randn(b, n, o, generator=g).to(device)
    out: dict[str, Any] = {}
    dtypes = {"fp32": None, "autocast": amp_dtype(device)}
    for label, dtype in dtypes.items():
        if label == "autocast" and dtype is None:
            continue
        errors = []
        results = []
        for fn in (film_sine, film_sine_reference):
            inputs = [t.to(device).requires_grad_(True) for t in tensors]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                y = fn(*inputs)
            grads = torch.autograd.grad(y, inputs, upstream.to(y.dtype))
            results.append([y.detach().float(), *[gr.float() for gr in grads]])
        for a, ref in zip(*results):
            errors.append(float((a - ref).norm() / ref.norm().clamp(min=1e-12)))
        limit = 1e-4 if dtype is None else 0.15
        if not all(math.isfinite(e) and e < limit for e in errors):
            raise AssertionError(f"{label}: fused vs plain relative errors {errors} "
                                 f"(limit {limit})")
        out[f"max_relative_error_{label}"] = max(errors)
    return out


def tiny_stages(device: torch.device, root: Path, name: str) -> dict[str, Any]:
    """Every stage at tiny size, tracked; returns per-stage seconds and final losses."""
    from ss3d.stages.data import render_stage
    from ss3d.stages.distill import distill_stage
    from ss3d.stages.evaluate import evaluate_stage
    from ss3d.stages.pretrain import pretrain_stage
    from ss3d.stages.selftrain import selftrain_stage

    cfg = load_config(None, {**TINY, "name": name, "data.root": str(root / "data"),
                             "output_dir": str(root / "outputs"),
                             "optim.device": str(device)})
    seconds: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        tic = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[stage] = round(time.perf_counter() - tic, 2)
        return result

    timed("render", lambda: render_stage(cfg, progress=False))
    pre = timed("pretrain", lambda: pretrain_stage(cfg, progress=False))
    self_ = timed("selftrain", lambda: selftrain_stage(cfg, category="bird", progress=False))
    dist = timed("distill", lambda: distill_stage(cfg, progress=False, register=False))
    ev = timed("evaluate", lambda: evaluate_stage(cfg, progress=False,
                                                  out_dir=root / "outputs" / name / "eval"))
    losses = {"pretrain_loss": pre.history[-1]["loss"],
              "selftrain_network_loss": next((h["network_loss"] for h in reversed(self_.history)
                                              if "network_loss" in h), float("nan")),
              "distill_loss": dist.history[-1]["loss"]}
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise AssertionError(f"non-finite losses: {bad}")
    for path in (pre.checkpoint, self_.checkpoint, dist.checkpoint):
        if not Path(path).is_file():
            raise AssertionError(f"missing checkpoint {path}")
    if not ev.rows:
        raise AssertionError("evaluation produced no rows")
    return {"stage_seconds": seconds, **losses, "eval_rows": len(ev.rows)}


def torchrun_stages(device: torch.device, root: Path) -> dict[str, Any]:
    """Pre-training, self-training and distillation under ``torchrun`` with one process per
    GPU (one process on a CPU), through the CLI, as a cluster job runs them."""
    overrides = {**TINY, "name": "gpu-check-torchrun", "data.root": str(root / "data"),
                 "output_dir": str(root / "outputs"), "optim.device": "auto",
                 "selftrain.category": "bird", "distill.steps": 2}
    processes = max(1, torch.cuda.device_count()) if device.type == "cuda" else 1
    torchrun = Path(sys.executable).with_name("torchrun")
    seconds: dict[str, float] = {}
    for stage in ("pretrain", "selftrain", "distill"):
        cmd = [str(torchrun), "--standalone", "--nproc-per-node", str(processes), "-m",
               "ss3d.cli", stage, *format_set_args(overrides)]
        tic = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                              env=os.environ.copy())
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun {stage} exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-800:]}")
        seconds[stage] = round(time.perf_counter() - tic, 2)
    out = root / "outputs" / "gpu-check-torchrun"
    for last in (out / "pretrain" / "last.pt", out / "selftrain-bird" / "last.pt",
                 out / "distill" / "last.pt"):
        if not last.is_file():
            raise AssertionError(f"torchrun wrote no {last}")
    return {"processes": processes, "stage_seconds": seconds,
            "command": f"torchrun --standalone --nproc-per-node {processes} -m ss3d.cli ..."}


def paper_steps(device: torch.device) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run as bench  # benchmarks/run.py

    return {"pretrain_step": bench.bench_step(3, ["paper"], device),
            "selftrain_step": bench.bench_selftrain(device)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="'auto', 'cuda', 'cuda:N' or 'cpu'.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Run on the CPU what does not need CUDA; skip the rest.")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu-check.json")
    args = parser.parse_args()
    device = torch.device("cpu") if args.dry_run else select_device(args.device)
    checks = Checks(args.out, {"device": str(device), "dry_run": args.dry_run})
    if device.type != "cuda" and not args.dry_run:
        print("[gpu-check] no CUDA device here: running the CPU dry run (--dry-run)", flush=True)
    checks.run("environment", lambda: environment(device))
    checks.run("fused layer", lambda: fused_layer(device))
    with tempfile.TemporaryDirectory(prefix="ss3d-gpu-check-") as tmp:
        root = Path(tmp)
        # a throwaway SQLite store: the check never writes into the project's runs
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        if device.type == "cuda":
            precisions = {"bf16": "bf16", "fp16 + GradScaler": "fp16"}
            if not torch.cuda.is_bf16_supported():
                precisions.pop("bf16")
                checks.skip("tiny stages, bf16", "this GPU has no bf16")
            for label, forced in precisions.items():
                os.environ["SS3D_CUDA_AMP"] = forced
                checks.run(f"tiny stages, {label}",
                           lambda forced=forced: tiny_stages(device, root, f"gpu-check-{forced}"))
            os.environ.pop("SS3D_CUDA_AMP", None)
        else:
            own = str(amp_dtype(device) or "fp32").replace("torch.", "")
            checks.run(f"tiny stages, {own} (CPU)",
                       lambda: tiny_stages(device, root, "gpu-check-cpu"))
            checks.skip("tiny stages, fp16 + GradScaler", "needs CUDA")
        checks.run("torchrun", lambda: torchrun_stages(device, root))
    if device.type == "cuda":
        checks.run("paper-size steps", lambda: paper_steps(device))
    else:
        checks.skip("paper-size steps", "needs CUDA (minutes per step on a CPU: `make bench` "
                    "measures them there)")
    checks.write()
    failed = [c["name"] for c in checks.results if c["status"] == "failed"]
    print(f"[gpu-check] {len(checks.results)} checks, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else "") + f"; results in {args.out}",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
