"""model.symmetric: the canonical field mirrored about the Y-Z plane, for either decoder, and
checkpoints written before the key load as they were trained (not folded)."""

from __future__ import annotations

import pytest
import torch

from ss3d.config import ExperimentConfig, ModelConfig, to_dict
from ss3d.engine import save_checkpoint
from ss3d.model import ReconstructionNet, adopt_checkpoint_model, load_network

TINY_MODEL = {"encoder_size": 32, "latent_dim": 16, "hidden": 16, "layers": 2,
              "viewpoint_net": False}
DECODERS = [{"decoder": "film_siren"},
            {"decoder": "triplane", "plane_channels": 4, "plane_resolution": 8}]


def _mirrored(points: torch.Tensor) -> torch.Tensor:
    return points * torch.tensor([-1.0, 1.0, 1.0])


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d["decoder"])
def test_symmetric_field_is_its_own_mirror_image(decoder):
    """Density and colour at (x, y, z) equal those at (-x, y, z); the same network unfolded
    differs there (so the test fails if the fold is lost), and gradients reach the decoder
    from points on both sides."""
    torch.manual_seed(0)
    net = ReconstructionNet(ModelConfig(**TINY_MODEL, **decoder, symmetric=True))
    latent = torch.randn(2, 16)
    points = torch.rand(2, 64, 3) * 1.6 - 0.8
    rgb, density = net.query(points, latent)
    rgb_m, density_m = net.query(_mirrored(points), latent)
    torch.testing.assert_close(rgb_m, rgb, rtol=0, atol=0)
    torch.testing.assert_close(density_m, density, rtol=0, atol=0)

    net.cfg.symmetric = False
    rgb_plain, _ = net.query(points, latent)
    rgb_plain_m, _ = net.query(_mirrored(points), latent)
    assert not torch.allclose(rgb_plain, rgb_plain_m)
    # points with x > 0 unchanged by the fold: the folded and plain fields agree there
    positive = points[..., 0] > 0
    torch.testing.assert_close(rgb_plain[positive], rgb[positive])

    net.cfg.symmetric = True
    left = points.clone()
    left[..., 0] = -left[..., 0].abs()  # only the x < 0 half-space
    rgb_l, density_l = net.query(left, latent)
    (rgb_l.sum() + density_l.sum()).backward()
    assert sum(p.grad.abs().sum() for p in net.decoder.parameters() if p.grad is not None) > 0


def test_checkpoints_say_whether_their_field_is_folded(tmp_path):
    """A checkpoint with ``symmetric: true`` loads folded; one written before the key existed
    loads unfolded whatever today's default is, and an experiment that continues it adopts
    that (a run configured symmetric is told, not silently folded)."""
    cfg = ExperimentConfig(model=ModelConfig(**TINY_MODEL, symmetric=True))
    net = ReconstructionNet(cfg.model)
    folded = save_checkpoint(tmp_path / "folded.pt", stage="pretrain", step=1,
                             config=to_dict(cfg), model=net)
    loaded, _ = load_network(folded)
    assert loaded.cfg.symmetric is True

    old = to_dict(cfg)
    del old["model"]["symmetric"]  # written before model.symmetric existed
    before = save_checkpoint(tmp_path / "before.pt", stage="pretrain", step=1, config=old,
                             model=net)
    loaded, payload = load_network(before)
    assert loaded.cfg.symmetric is False
    ours = ModelConfig(**TINY_MODEL, symmetric=True)
    assert adopt_checkpoint_model(ours, payload, before) == ["model.symmetric: True -> False"]
    assert ours.symmetric is False
