"""The fused FiLM-SIREN layer (ss3d.fused) against the plain autograd layer it replaces."""

from __future__ import annotations

import pytest
import torch

from ss3d.config import load_config
from ss3d.fused import film_sine, film_sine_reference
from ss3d.model import FiLMSiren, ReconstructionNet


def _inputs(b: int, n: int, i: int, o: int, dtype: torch.dtype, omega: float = 1.0,
            seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n, i, generator=g, dtype=dtype) * 2 - 1
    weight = torch.randn(o, i, generator=g, dtype=dtype) / i ** 0.5
    bias = torch.randn(o, generator=g, dtype=dtype) * 0.1
    freq = omega * (1 + 0.2 * torch.randn(b, o, generator=g, dtype=dtype))
    shift = omega * 0.2 * torch.randn(b, o, generator=g, dtype=dtype)
    return [t.requires_grad_(True) for t in (x, weight, bias, freq, shift)]


def _grads(fn, inputs: list[torch.Tensor], upstream: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs, upstream)
    return (out, *grads)


def test_gradcheck_float64():
    inputs = _inputs(2, 5, 4, 3, torch.float64, omega=3.0)
    assert torch.autograd.gradcheck(film_sine, inputs, eps=1e-6, atol=1e-5)


def test_matches_plain_layer_in_float32():
    inputs = _inputs(3, 257, 16, 24, torch.float32, omega=30.0, seed=1)
    upstream = torch.randn(3, 257, 24, generator=torch.Generator().manual_seed(2))
    fused = _grads(film_sine, inputs, upstream)
    plain = _grads(film_sine_reference, inputs, upstream)
    names = ["output", "x", "weight", "bias", "freq", "shift"]
    for name, a, b in zip(names, fused, plain):
        scale = b.abs().max().clamp(min=1.0)
        assert (a - b).abs().max() / scale < 1e-4, name


def test_no_input_gradient_when_not_needed():
    x, weight, bias, freq, shift = _inputs(2, 7, 3, 5, torch.float32)
    x = x.detach()
    out = film_sine(x, weight, bias, freq, shift)
    out.sum().backward()
    assert x.grad is None and weight.grad is not None and freq.grad is not None


def test_decoder_paths_agree_and_share_parameters():
    torch.manual_seed(0)
    fused = FiLMSiren(latent_dim=32, hidden=32, layers=3, fused=True)
    plain = FiLMSiren(latent_dim=32, hidden=32, layers=3, fused=False)
    plain.load_state_dict(fused.state_dict())  # same parameters, same checkpoints
    with torch.no_grad():  # a non-trivial FiLM (the head starts at zero)
        fused.film[-1].weight.normal_(0, 0.05)
        plain.film[-1].weight.copy_(fused.film[-1].weight)
    latent = torch.randn(2, 32)
    points = torch.rand(2, 300, 3) - 0.5
    outs = []
    for net in (fused, plain):
        net.zero_grad()
        out = net(points, *net.film_params(latent))
        out.square().sum().backward()
        outs.append((out.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    for name, grad in outs[0][1].items():
        ref = outs[1][1][name]
        assert torch.allclose(grad, ref, atol=1e-4 * max(1.0, float(ref.abs().max()))), name


def test_bf16_autocast_runs_in_bf16_and_stays_close():
    inputs = _inputs(2, 512, 32, 32, torch.float32, omega=30.0, seed=3)
    upstream = torch.randn(2, 512, 32, generator=torch.Generator().manual_seed(4))
    reference = _grads(film_sine_reference, inputs, upstream)
    results = {}
    for name, fn in (("fused", film_sine), ("plain", film_sine_reference)):
        x, weight, bias, freq, shift = inputs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            # as in the model, where FiLM values come out of an autocast Linear in bf16
            out = fn(x, weight, bias, freq.to(torch.bfloat16), shift.to(torch.bfloat16))
        assert out.dtype == torch.bfloat16
        grads = torch.autograd.grad(out, inputs, upstream.to(torch.bfloat16))
        assert all(g.dtype == t.dtype for g, t in zip(grads, inputs))  # fp32 parameter grads
        results[name] = [float((a.detach().float() - b.detach()).norm() / b.detach().norm())
                         for a, b in zip((out, *grads), reference)]
    # bf16 keeps 8 bits (z ~ 30 rad: ~0.1 rad steps), so neither path is exact; the fused one
    # must be about as close to fp32 as autocast's plain layer (measured: 4-7% vs 4-5%)
    for name, fused, plain in zip(["output", "x", "weight", "bias", "freq", "shift"],
                                  results["fused"], results["plain"]):
        assert fused < max(1.5 * plain, 0.02), (name, fused, plain)


@pytest.mark.parametrize("fused", [True, False])
def test_network_config_switch(fused: bool):
    cfg = load_config(None, {"model.fused_layers": fused, "model.hidden": 16})
    net = ReconstructionNet(cfg.model)
    assert net.decoder.fused is fused
    rgb, density = net(torch.rand(1, 3, 64, 64), torch.rand(1, 10, 3) - 0.5)
    assert rgb.shape == (1, 10, 3) and density.shape == (1, 10, 1)


def test_frozen_network_gets_only_the_input_gradient():
    """The camera search: parameters and FiLM frozen, gradient to the points only."""
    x, weight, bias, freq, shift = _inputs(2, 64, 8, 8, torch.float32, omega=30.0, seed=5)
    frozen = [t.detach() for t in (weight, bias, freq, shift)]
    upstream = torch.randn(2, 64, 8, generator=torch.Generator().manual_seed(6))
    (fused,) = torch.autograd.grad(film_sine(x, *frozen), x, upstream)
    (plain,) = torch.autograd.grad(film_sine_reference(x, *frozen), x, upstream)
    assert torch.allclose(fused, plain, rtol=1e-4, atol=1e-3)


def test_double_backward_is_refused():
    inputs = _inputs(1, 4, 3, 3, torch.float64)
    (grad_x,) = torch.autograd.grad(film_sine(*inputs).sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError):
        grad_x.sum().backward()
