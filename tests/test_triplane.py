"""The tri-plane decoder (model.decoder=triplane): same field interface as the FiLM-SIREN,
trains, checkpoints, resumes, and renders through the one volume path."""

from __future__ import annotations

import pytest
import torch

from ss3d.cameras import Intrinsics
from ss3d.config import ModelConfig, load_config
from ss3d.engine import load_checkpoint
from ss3d.model import ReconstructionNet, TriplaneDecoder, adopt_checkpoint_model, load_network
from ss3d.stages.pretrain import pretrain_stage
from ss3d.volume import render_network

from .test_pretrain import TINY, tiny_data  # noqa: F401 (the tiny renders, a fixture)

PLANES = {"model.decoder": "triplane", "model.plane_channels": 4, "model.plane_resolution": 8,
          "model.hidden": 16, "model.layers": 2,
          # a constant rate: a cosine schedule over 3 steps is not the first half of one over 6
          "pretrain.schedule": "constant"}


def test_planes_are_read_where_the_point_is():
    """A point's feature is the sum of its three plane samples: a plane that is 1 on one half
    of the cube (x > 0 on the XY plane) changes the output only for points there. Mutation
    caught: swapping the plane coordinates (reading XY with (y, x)) moves the boundary."""
    dec = TriplaneDecoder(latent_dim=8, hidden=8, layers=1, channels=2, resolution=8)
    planes = torch.zeros(1, 3, 2, 8, 8)
    planes[0, 0, 0, :, 4:] = 1.0  # XY plane, channel 0: columns of x > 0
    points = torch.tensor([[[0.3, -0.2, 0.1], [-0.3, -0.2, 0.1], [0.3, 0.4, -0.4],
                            [-0.3, 0.4, -0.4]]])
    out = dec(points, planes)
    base = dec(points, torch.zeros_like(planes))
    changed = (out - base).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [True, False, True, False]


def test_conditioning_is_per_image_and_gradients_reach_the_generator():
    net = ReconstructionNet(ModelConfig(decoder="triplane", plane_channels=4,
                                        plane_resolution=8, hidden=16, layers=2,
                                        encoder_size=32, latent_dim=16, viewpoint_net=False))
    latent = torch.randn(2, 16)
    points = torch.rand(2, 50, 3) - 0.5
    rgb, density = net.query(points, latent)
    assert rgb.shape == (2, 50, 3) and density.shape == (2, 50, 1)
    # image 1's field does not depend on image 0's latent
    other = latent.clone()
    other[0] += 1.0
    torch.testing.assert_close(net.query(points, other)[0][1], rgb[1])
    assert not torch.allclose(net.query(points, other)[0][0], rgb[0])
    (rgb.sum() + density.sum()).backward()
    assert net.decoder.seed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="power of two"):
        TriplaneDecoder(16, resolution=12)


def _cfg(root, name, **extra):
    return load_config(None, {**TINY, **PLANES, "name": name, "data.root": str(root / "data"),
                              "output_dir": str(root / "out"), **extra})


def test_triplane_pretrains_resumes_bit_for_bit_and_renders(tiny_data):  # noqa: F811
    straight = pretrain_stage(_cfg(tiny_data, "straight", **{"pretrain.steps": 6}),
                              progress=False, track=False)
    pretrain_stage(_cfg(tiny_data, "resumed", **{"pretrain.steps": 3}), progress=False,
                   track=False)
    resumed = pretrain_stage(_cfg(tiny_data, "resumed", **{"pretrain.steps": 6}),
                             resume=True, progress=False, track=False)
    a = load_checkpoint(straight.checkpoint)["model"]
    b = load_checkpoint(resumed.checkpoint)["model"]
    assert any(k.startswith("decoder.generator") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "input_mask_iou" in straight.validation[-1]
    # a checkpoint says which decoder it holds: a FiLM-SIREN experiment adopts it
    payload = load_checkpoint(straight.checkpoint)
    film = load_config(None, TINY).model
    changed = adopt_checkpoint_model(film, payload, straight.checkpoint)
    assert "model.decoder: 'film_siren' -> 'triplane'" in changed
    net, _ = load_network(straight.checkpoint)
    assert isinstance(net.decoder, TriplaneDecoder)
    with torch.no_grad():
        latent = net.encode(torch.rand(2, 3, 32, 32))
        out = render_network(lambda p: net.query(p, latent), torch.tensor([0.0, 90.0]),
                             torch.tensor([10.0, 20.0]), torch.tensor([2.0, 2.0]),
                             Intrinsics.from_fov(40.0, 12), net.cfg)
    assert out["mask"].shape == (2, 12, 12) and torch.isfinite(out["rgb"]).all()
