"""Training mechanics every stage shares: device, seeds, mixed precision, ranks, the optimiser
step and the one checkpoint format.

The run bookkeeping that sits on top (MLflow run or none, progress, rank-0 checkpoints, resume)
is :class:`ss3d.stages.shell.StageRun`. Data parallelism is a launcher change
(``torchrun --nproc-per-node N -m ss3d.cli pretrain ...``): :func:`init_distributed` reads the
torchrun environment, :class:`Runtime` knows the rank, splits the global batch
(:meth:`Runtime.local_batch`) and items (:meth:`Runtime.shard`), and :func:`optimiser_step`
averages the gradients over ranks.

Checkpoint format (``torch.save`` of a dict, written atomically):

    {"format": "ss3d-checkpoint", "version": 2, "stage": str, "step": int,
     "config": nested config dict, "model": state_dict, "optimizer": state_dict | None,
     "extra": dict (stage-specific state, e.g. the camera hypothesis bank),
     "rng": {"python", "numpy", "torch", "cuda"}, "mlflow_run_id": str | None}
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import random
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ss3d.files import atomic_path, remove_stale_temps

__all__ = [
    "CheckpointError",
    "Runtime",
    "check_resume",
    "amp_dtype",
    "autocast",
    "cpu_bf16_supported",
    "init_distributed",
    "make_adam",
    "move_batch",
    "optimiser_step",
    "load_checkpoint",
    "load_plain",
    "save_checkpoint",
    "seed_everything",
    "select_device",
]

CHECKPOINT_FORMAT = "ss3d-checkpoint"
CHECKPOINT_VERSION = 2  # 2: plain data only (loads with weights_only)
log = logging.getLogger("ss3d")


class CheckpointError(ValueError):
    """A file is missing, unreadable or not an ss3d checkpoint."""


class DeviceError(ValueError):
    """The configured device does not exist on this machine."""


def select_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → this rank's CUDA device when available, else CPU. Explicit names are checked."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"optim.device={preference!r} but CUDA is not available here; "
                          "use 'auto' or 'cpu'")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise DeviceError(f"optim.device={preference!r} but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (global state used by libraries)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@functools.cache
def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), read from the kernel.

    Where it has, bf16 autocast is several times faster than fp32 for our models at the same
    held-out quality (docs/results.md, Speed); without it, PyTorch emulates bf16 and is slower
    than fp32, so we stay in fp32. ``SS3D_CPU_AMP=0/1`` overrides the detection.
    """
    override = os.environ.get("SS3D_CPU_AMP")
    if override is not None:
        value = override.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off", ""):
            return False
        raise DeviceError(f"SS3D_CPU_AMP={override!r}: use 1 (bf16 autocast on the CPU) or 0 "
                          "(fp32), or unset it to detect the CPU's bf16 support")
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap, reliable probe, so stay in fp32
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for plain fp32.

    CUDA: bf16 where supported, else fp16 (with a GradScaler); ``SS3D_CUDA_AMP=fp16`` (or
    ``bf16``) forces one, e.g. to check the fp16 + GradScaler path on a bf16 GPU
    (``make gpu-check`` does). CPU: bf16 only where the CPU has native bf16 instructions
    (:func:`cpu_bf16_supported`).
    """
    if not enabled:
        return None
    if device.type == "cuda":
        forced = os.environ.get("SS3D_CUDA_AMP", "").strip().lower()
        if forced in ("fp16", "float16"):
            return torch.float16
        if forced in ("bf16", "bfloat16"):
            return torch.bfloat16
        if forced:
            raise DeviceError(f"SS3D_CUDA_AMP={forced!r}: use fp16 or bf16")
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True) -> Any:
    """Mixed precision where it pays (:func:`amp_dtype`); a no-op elsewhere."""
    dtype = amp_dtype(device, enabled)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_adam(params: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam for a network's parameters, with PyTorch's fused kernel.

    The fused step is one kernel per parameter instead of a dozen elementwise passes, several
    times faster than the default ``foreach`` step on the smoke model (``make bench``). CPU and
    CUDA both have it; the state dict is the same as the unfused optimiser's, so resumes work
    across.
    """
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def grad_scaler(device: torch.device, enabled: bool = True) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 autocast (bf16 needs none).

    Every training stage steps through one (``scale → backward → unscale_ → clip → step →
    update``): without it fp16 gradients underflow; where it is inactive it passes through.
    """
    active = device.type == "cuda" and amp_dtype(device, enabled) == torch.float16
    return torch.amp.GradScaler("cuda", enabled=active)


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A loader batch with its tensors on ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, parameters: Any, grad_clip: float, *,
                   runtime: Runtime | None = None,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> torch.Tensor:
    """One update of every training stage: zero_grad → scaled backward → gradient average over
    ranks → unscale → clip → step → scaler update → schedule.

    Every rank must call it the same number of times (it all-reduces); a rank with nothing to
    learn from in a step passes a zero loss. Returns the gradient norm before clipping
    (``grad_clip <= 0`` measures it without clipping).
    """
    params = [p for p in parameters if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:
        scaler.scale(loss).backward()
    if runtime is not None and runtime.distributed:
        runtime.average_gradients(params)
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else 1e9)
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    return grad_norm


@dataclass
class Runtime:
    """Where this process runs: device, rank and world size."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def info(self, message: str, *args: Any) -> None:
        """Log on rank 0 only."""
        if self.is_main:
            log.info(message, *args)

    def local_batch(self, global_batch: int, available: int | None = None,
                    what: str = "optim.batch_size") -> int:
        """This rank's share of a global batch; the same global batch on any number of ranks
        trains the same way (gradients are averaged over ranks).

        ``available``: the items there are; a smaller dataset trains on the largest batch it
        fills that divides over the ranks.
        """
        if available is not None and available < global_batch:
            global_batch = max(available - available % self.world_size, self.world_size)
        if global_batch % self.world_size:
            raise ValueError(f"{what}={global_batch} is the global batch and must divide "
                             f"evenly over {self.world_size} processes")
        return global_batch // self.world_size

    def shard(self, count: int) -> torch.Tensor:
        """The item indices ``(≈count / world,)`` this rank owns: every ``world``-th from its
        rank, so shards differ in size by at most one and cover ``0..count-1`` once."""
        return torch.arange(self.rank, count, self.world_size)

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (what DDP does at construction)."""
        if not self.distributed:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            moved = tensor.data.to(self.device)
            torch.distributed.broadcast(moved, src=0)
            tensor.data.copy_(moved)

    def average_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Average ``.grad`` over ranks in one all-reduce of the flattened gradients.

        This is DDP's arithmetic without its module wrapper, on purpose: self-training's
        losses are not one forward call of a module (encoder, camera search through a frozen
        decoder, queries at searched cameras), and a rank can have no image to train on in a
        step (phase-B gating); DDP needs the former and would hang on the latter. A parameter
        without a gradient on this rank contributes zeros.
        """
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p, g in zip(parameters, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
            offset += n

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over ranks (a copy; ``tensor`` itself when not distributed).

        Used to merge per-rank pieces that are zero outside each rank's own items (the camera
        bank's rows, per-image scores)."""
        if not self.distributed:
            return tensor
        moved = tensor.detach().to(self.device, copy=True)
        torch.distributed.all_reduce(moved)
        return moved.to(tensor.device)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out


def init_distributed(device_preference: str = "auto") -> Runtime:
    """Read torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) and set up."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, local_rank)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)
    return Runtime(device=device, rank=rank, local_rank=local_rank, world_size=world_size)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _rng_state() -> dict[str, Any]:
    # numpy's state as a tensor and plain numbers, so the checkpoint loads with weights_only
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state = {"python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss,  # noqa: NPY002
                         gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers.

    Checkpoints hold only tensors and plain data so that :func:`load_checkpoint` can read
    them with ``torch.load(weights_only=True)``, which never runs pickled code.
    """
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(value) for value in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_checkpoint(path: str | Path, *, stage: str, step: int, config: dict[str, Any],
                    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, Any] | None = None,
                    mlflow_run_id: str | None = None) -> Path:
    """Write the one ss3d checkpoint format atomically (a crash never leaves half a file).

    Everything but the state dicts passes through :func:`plain`, so the file loads without
    unpickling code.

    Raises:
        WriteError: naming the file and the cause (disk full, read-only, permission); an
            earlier checkpoint at ``path`` is left as it was.
    """
    path = Path(path)
    if path.parent.is_dir():
        remove_stale_temps(path)
    payload = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "stage": stage,
        "step": int(step), "config": plain(config), "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": plain(extra or {}), "rng": _rng_state(), "mlflow_run_id": mlflow_run_id,
    }
    # through a Python file: a failed write raises OSError with its errno (disk full, read-only),
    # which atomic_path names with the file, instead of torch's "unexpected pos" RuntimeError
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        try:
            torch.save(payload, fh)
        except RuntimeError as err:
            # torch's zip writer turns a failed write of the file object into its own
            # RuntimeError ("unexpected pos ...") with the OSError as its context, depending on
            # where its buffer flushes: hand the OSError on, so the file and the cause are named
            cause = err.__cause__ or err.__context__
            if isinstance(cause, OSError):
                raise cause from None
            raise
    return Path(path)


def load_plain(path: str | Path, what: str = "", map_location: str | torch.device = "cpu",
               kind: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, so a crafted file
    cannot run code here (the default unpickler would call whatever the file names).

    Raises:
        CheckpointError: one line naming ``what`` (the config key, if any), the file and why it
            is refused, instead of torch's advice to load it with ``weights_only=False``.
    """
    prefix = f"{what}: {path}" if what else str(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():  # not a pickle that names code: a broken file
            raise CheckpointError(f"{prefix}: not a readable {kind} (not a torch.save file, or "
                                  "a truncated one)") from None
        first = next((line.strip() for line in str(err).splitlines()
                      if "global" in line.lower()), "")
        raise CheckpointError(
            f"{prefix}: refused: the file holds Python objects other than tensors and plain "
            f"data, which could run code when loaded ({first[:200]})" + (
                f". ss3d checkpoints since version {CHECKPOINT_VERSION} never do; re-create it "
                "with this ss3d" if kind == "checkpoint" else
                f"; a {kind} holds tensors only (a state dict)")) from None
    except Exception as err:  # torch raises many types for foreign / truncated files
        text = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{prefix}: not a readable {kind} ({type(err).__name__}: "
                              f"{text})") from None


# What a resumed stage has done (from the checkpoint) against what its config asks for:
# stage -> (config section, config key, where the progress is in the checkpoint, unit)
_PROGRESS = {"pretrain": ("pretrain", "steps", "step", "step"),
             "distill": ("distill", "steps", "step", "step"),
             "selftrain": ("selftrain", "epochs", "epoch", "epoch")}


def _config_differences(saved: Any, current: Any, prefix: str) -> list[str]:
    """``key: saved -> current`` for the keys of one config section that differ."""
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return []
    return [f"{prefix}.{k}: {saved[k]!r} -> {current[k]!r}" for k in sorted(current)
            if k in saved and saved[k] != current[k]]


def check_resume(path: Path, payload: dict[str, Any], config: dict[str, Any],
                 stage: str | None = None, model: torch.nn.Module | None = None) -> None:
    """Refuse to resume ``payload`` under ``config`` (nested dict) before anything is loaded
    or written, in one line saying what differs: another experiment's checkpoint (its MLflow
    run is in another experiment), a network of another architecture than ``model`` (the
    ``model.*`` keys that differ), or a checkpoint already past the configured steps (it would
    train nothing and then be rewritten under a config that contradicts it).

    Raises:
        CheckpointError: naming the file and the difference.
    """
    saved = payload.get("config") or {}
    if isinstance(saved, dict) and saved.get("name") not in (None, config.get("name")):
        raise CheckpointError(
            f"{path}: a checkpoint of experiment '{saved.get('name')}', not of "
            f"'{config.get('name')}': resume only an experiment's own checkpoint (its MLflow run "
            "belongs to that experiment)")
    if model is not None:
        expected = {k: tuple(v.shape) for k, v in unwrap(model).state_dict().items()}
        found = {k: tuple(v.shape) for k, v in (payload.get("model") or {}).items()
                 if torch.is_tensor(v)}
        if expected != found:
            differ = _config_differences(saved.get("model"), config.get("model"), "model")
            extra = sorted(set(found) - set(expected))[:2]
            first = next((f"{k}: {found.get(k)} in the file, {shape} here"
                          for k, shape in expected.items() if found.get(k) != shape),
                         f"the file has other parameters ({extra})")
            raise CheckpointError(
                f"{path}: the checkpoint's network does not fit this config's ("
                + ("; ".join(differ) if differ else first) + "): resume with the settings it "
                "was trained with, or start a new run")
    if stage in _PROGRESS:
        section, key, where, unit = _PROGRESS[stage]
        done = payload.get(where) if where == "step" else (payload.get("extra") or {}).get(where)
        total = (config.get(section) or {}).get(key)
        if isinstance(done, int) and isinstance(total, int) and done > total:
            raise CheckpointError(
                f"{path}: the checkpoint is at {unit} {done}, past {section}.{key}={total}: "
                f"resuming would train nothing and rewrite it under a config that contradicts "
                f"it; set {section}.{key} to {done} or more to continue it")


def load_checkpoint(path: str | Path, *, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu",
                    restore_rng: bool = False, stage: str | None = None,
                    config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint, optionally loading it into ``model`` / ``optimizer``.

    ``stage``: the stage that resumes from it; a checkpoint of another stage is refused
    before anything is loaded (its optimiser and MLflow run belong elsewhere). ``config``
    (the resuming run's, as a nested dict): the checkpoint is checked against it first
    (:func:`check_resume`).

    Raises:
        CheckpointError: naming the file, when it is missing, unreadable or not ours.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = load_plain(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ss3d checkpoint (no '{CHECKPOINT_FORMAT}' "
                              "format marker)")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than "
                              f"this ss3d supports ({CHECKPOINT_VERSION})")
    if stage is not None and payload.get("stage") != stage:
        raise CheckpointError(f"{path}: a '{payload.get('stage')}' checkpoint; resuming "
                              f"{stage} needs one written by {stage}")
    if config is not None:
        check_resume(path, payload, config, stage, model)
    if model is not None:
        unwrap(model).load_state_dict(payload["model"])
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if restore_rng:
        _set_rng_state(payload["rng"])
    return payload
