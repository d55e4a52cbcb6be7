"""Data-parallel scaling: 1 process against N, the same global batch, side by side.

    python benchmarks/ddp_scaling.py                 # CPU, gloo, 1 vs 2 processes
    python benchmarks/ddp_scaling.py --procs 1 2 4 --device cuda   # one GPU per process

Each variant is a real ``torchrun`` job on the CLI (``ss3d pretrain`` / ``ss3d selftrain``) on a
small rendered set; a step's time is read from the checkpoint's history (``step_seconds``,
median over the steps after the first few), so start-up and validation do not count. On the CPU
the cores are split between the processes (``OMP_NUM_THREADS = cores / N``): the question is
whether N processes with the same cores and the same global batch keep up with one, i.e. what
the gradient all-reduce and the smaller per-process batches cost. Rounds are interleaved, as in
``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ss3d.config import format_set_args  # noqa: E402
from ss3d.engine import load_checkpoint  # noqa: E402

BASE = {
    "name": "scaling", "data.categories": ["car", "laptop"], "data.heldout_categories": [],
    "data.models_per_category": 10, "data.collections": ["airplane"],
    "data.images_per_collection": 48, "data.collection_image_size": 64, "data.crop_size": 32,
    "render.image_size": 32, "render.views_per_model": 4, "model.encoder_size": 32,
    "pretrain.val_every": 10_000, "pretrain.checkpoint_every": 10_000, "pretrain.val_models": 2,
    "pretrain.val_views": 1, "selftrain.category": "airplane", "selftrain.epochs": 1,
    "selftrain.phase_a_epochs": 0, "selftrain.eval_every": 10, "selftrain.init": "spread",
}


def run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def step_seconds(checkpoint: Path, skip: int) -> float:
    history = load_checkpoint(checkpoint)["extra"]["history"]
    times = [h["step_seconds"] for h in history][skip:]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=8, help="global batch")
    parser.add_argument("--steps", type=int, default=16, help="pre-training steps per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stages", nargs="+", default=["pretrain", "selftrain"],
                        help="selftrain needs pretrain before it in the list")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="ss3d-scaling-"))
    overrides = {**BASE, "data.root": str(root / "data"), "output_dir": str(root / "out"),
                 "optim.batch_size": args.batch, "optim.device": args.device,
                 "pretrain.steps": args.steps}
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    cli = [sys.executable, "-m", "ss3d.cli"]
    print(f"rendering a small set in {root} ...", flush=True)
    run(cli + ["render"] + format_set_args(overrides), env)
    results: dict[str, dict[int, list[float]]] = {s: {n: [] for n in args.procs}
                                                  for s in args.stages}
    for r in range(args.rounds):
        for n in args.procs:
            threads = max(1, cores // n) if args.device == "cpu" else 4
            env_n = {**env, "OMP_NUM_THREADS": str(threads)}
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", str(n), "-m", "ss3d.cli"]
            for stage in args.stages:
                out = root / "out" / "scaling"
                if stage == "pretrain":
                    run(torchrun + ["pretrain"] + format_set_args(overrides), env_n)
                    ckpt, skip = out / "pretrain" / "last.pt", 3
                else:
                    run(torchrun + ["selftrain"] + format_set_args(overrides), env_n)
                    ckpt, skip = out / "selftrain-airplane" / "last.pt", 1
                seconds = step_seconds(ckpt, skip)
                results[stage][n].append(seconds)
                print(f"round {r + 1}: {stage}, {n} process(es) x {threads} threads: "
                      f"{seconds * 1000:.0f} ms/step", flush=True)
    rows = []
    print(f"\nglobal batch {args.batch}, {cores} cores, device {args.device}")
    print("| stage | processes | ms/step | samples/s | samples/s per process | vs 1 process |")
    print("|---|---|---|---|---|---|")
    for stage in args.stages:
        reference = statistics.median(results[stage][args.procs[0]])
        for n in args.procs:
            ms = statistics.median(results[stage][n])
            rate = args.batch / ms
            rows.append({"stage": stage, "processes": n, "ms_per_step": ms * 1000,
                         "samples_per_s": rate, "per_process": rate / n,
                         "speedup": reference / ms})
            print(f"| {stage} | {n} | {ms * 1000:.0f} | {rate:.1f} | {rate / n:.1f} | "
                  f"{reference / ms:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
