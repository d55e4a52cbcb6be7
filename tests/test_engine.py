from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
import torch

from ss3d.engine import (
    CheckpointError,
    autocast,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    select_device,
)


def test_device_selection_on_cpu():
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
    runtime = init_distributed("cpu")
    assert runtime.is_main and not runtime.distributed


def test_cpu_autocast_follows_the_cpu_bf16_detection(monkeypatch):
    """bf16 on CPUs with native bf16 instructions, plain fp32 elsewhere or when disabled."""
    from ss3d import engine

    cpu = torch.device("cpu")
    for flag, expected in (("1", torch.bfloat16), ("0", torch.float32)):
        monkeypatch.setenv("SS3D_CPU_AMP", flag)
        engine.cpu_bf16_supported.cache_clear()
        with autocast(cpu):
            x = torch.ones(2, 2) @ torch.ones(2, 2)
        assert x.dtype == expected
        assert engine.amp_dtype(cpu) == (None if flag == "0" else torch.bfloat16)
    with autocast(cpu, enabled=False):  # optim.amp: false always means fp32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.delenv("SS3D_CPU_AMP")
    engine.cpu_bf16_supported.cache_clear()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert engine.cpu_bf16_supported() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_checkpoint_round_trip_restores_everything(tmp_path):
    seed_everything(3)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "ck.pt", stage="pretrain", step=7, config={"a": 1},
                           model=model, optimizer=opt, extra={"bank": torch.arange(3)},
                           mlflow_run_id="abc")
    expected_next = torch.rand(2)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file

    model2 = torch.nn.Linear(4, 2)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    payload = load_checkpoint(path, model=model2, optimizer=opt2, restore_rng=True)
    assert payload["step"] == 7 and payload["mlflow_run_id"] == "abc"
    assert torch.equal(payload["extra"]["bank"], torch.arange(3))
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(2), expected_next)  # RNG continues where it was saved


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an ss3d checkpoint"):
        load_checkpoint(foreign)


class _Payload:
    """Unpickling this calls ``Path.touch`` on a marker file: a stand-in for any command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_a_crafted_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": "ss3d-checkpoint", "version": 2, "model": {},
                "extra": _Payload(str(marker))}, crafted)
    with pytest.raises(CheckpointError, match="crafted.pt: refused"):
        load_checkpoint(crafted)
    assert not marker.exists()
    # the same file through torch's default unpickler would have run it: the test can fail
    torch.load(crafted, weights_only=False)
    assert marker.exists()


def test_numpy_in_extras_and_rng_round_trip_as_plain_data(tmp_path):
    import random

    import numpy as np

    seed_everything(5)
    model = torch.nn.Linear(2, 2)
    extra = {"alignment": np.eye(3), "score": np.float32(0.5), "ids": (np.int64(4), "a")}
    path = save_checkpoint(tmp_path / "ck.pt", stage="selftrain", step=1, config={},
                           model=model, extra=extra)
    expected = (np.random.rand(3), random.random())  # noqa: NPY002
    seed_everything(9)
    payload = load_checkpoint(path, restore_rng=True)
    assert torch.equal(payload["extra"]["alignment"], torch.eye(3, dtype=torch.float64))
    assert payload["extra"]["score"] == 0.5 and type(payload["extra"]["score"]) is float
    assert payload["extra"]["ids"] == (4, "a")
    assert np.array_equal(np.random.rand(3), expected[0])  # noqa: NPY002
    assert random.random() == expected[1]


def test_an_interrupted_save_leaves_nothing_after_the_next_save(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "last.pt"
    # what kill -9 in the middle of torch.save leaves: a temp file beside the target
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)
    other = tmp_path / ".best.pt.xyz.tmp"  # another checkpoint's temp file is not ours
    other.write_bytes(b"\0")
    save_checkpoint(path, stage="pretrain", step=1, config={}, model=model)
    assert path.is_file() and not stale.exists() and other.exists()
    load_checkpoint(path)


def test_resuming_from_another_stages_checkpoint_is_refused_before_loading(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "pre.pt", stage="pretrain", step=3, config={},
                           model=model)
    other = torch.nn.Linear(2, 2)
    before = other.weight.clone()
    with pytest.raises(CheckpointError, match="pre.pt: a 'pretrain' checkpoint; resuming "
                                              "selftrain needs one written by selftrain"):
        load_checkpoint(path, model=other, stage="selftrain")
    assert torch.equal(other.weight, before)
    assert load_checkpoint(path, stage="pretrain")["step"] == 3


def test_crafted_pretrained_weights_are_refused_in_one_line(tmp_path):
    from ss3d.model import ImageEncoder

    marker, crafted = tmp_path / "pwned", tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": _Payload(str(marker))}, crafted)
    with pytest.raises(CheckpointError) as err:
        ImageEncoder(pretrained_weights=crafted)
    message = str(err.value)
    assert message.startswith(f"model.pretrained_weights: {crafted}: refused: the file holds")
    assert "\n" not in message and "weights_only" not in message and not marker.exists()


_FAULTS_PER_BLOCK = """
import resource
import ss3d  # noqa: F401  (importing ss3d sets the allocator)
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(64 << 20)  # 64 MiB, zero-filled: every page touched
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[2:]))
"""


def _faults_per_block(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_BLOCK], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_large_blocks_are_reused_instead_of_mapped_again():
    """A freed 64 MiB block comes back without page faults once ss3d is imported; with
    SS3D_MALLOC=default glibc maps and zero-fills all 16,384 pages again every time."""
    from ss3d.allocator import keep_large_blocks

    assert keep_large_blocks()  # glibc here
    pages = (64 << 20) // resource.getpagesize()
    assert _faults_per_block({"SS3D_MALLOC": "default"}) > pages // 2
    assert _faults_per_block({"SS3D_MALLOC": ""}) < pages // 20
