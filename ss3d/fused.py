"""A fused FiLM-SIREN layer: modulated weights, one batched matmul, a hand-written backward.

One hidden layer of :class:`ss3d.model.FiLMSiren` computes, per image ``b`` and point ``n``::

    h[b, n] = sin(freq[b] * (W x[b, n] + bias) + shift[b])          (omega_0 folded in freq/shift)

Written with plain autograd ops this is a matmul, an ``addcmul`` and a ``sin``; autograd then
keeps the matmul output and the pre-activation alive and its backward makes five more passes
over ``(B, N, hidden)`` tensors (``cos``, two products, a reduction, the ``addcmul``'s
gradient). On CPU at our sizes those elementwise passes, not the matmuls, are where the time
goes (``make bench``; docs/results.md, Speed). Because ``freq`` and ``shift`` are per image,
they can be folded into the *weights* instead (weight modulation, as in StyleGAN2)::

    W_b = freq[b, :, None] * W        (B, O, I)   -- tiny
    c_b = freq[b] * bias + shift[b]   (B, O)      -- tiny
    z   = baddbmm(c_b, x, W_b^T)      (B, N, O)   -- one matmul, bias included
    h   = sin(z)

so the forward makes two passes over the big tensor (matmul out, sine) and the backward needs
``cos(z)``: :class:`FiLMSine` recomputes ``z`` from the saved input (the previous layer's
output, which autograd keeps anyway) instead of storing it, and folds ``cos`` and the incoming
gradient into one buffer in place. Gradients for ``W``, ``bias``, ``freq`` and ``shift`` come
back through the small modulated tensors.

Autocast: the layer runs in the autocast dtype when autocast is on for the input's device (as
``torch.baddbmm`` would) and in the input's dtype otherwise; the backward runs in the forward's
dtype, and every gradient is returned in its input's dtype.
"""

from __future__ import annotations

import torch

__all__ = ["FiLMSine", "film_sine", "film_sine_reference"]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def _wide(dtype: torch.dtype) -> torch.dtype:
    """fp32, or the parameters' dtype where wider (float64 in gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


def _modulate(weight: torch.Tensor, bias: torch.Tensor, freq: torch.Tensor,
              shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image weights ``(B, O, I)`` and biases ``(B, O)``."""
    return freq[:, :, None] * weight, torch.addcmul(shift, freq, bias)


class FiLMSine(torch.autograd.Function):
    """``sin(freq * (x @ W^T + bias) + shift)`` with a hand-written, recomputing backward.

    Shapes: ``x (B, N, I)``, ``weight (O, I)``, ``bias (O,)``, ``freq``/``shift`` ``(B, O)``
    -> ``(B, N, O)``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, freq, shift):  # type: ignore[override]
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            wide = _wide(weight.dtype)
            w_mod, b_mod = _modulate(weight.to(wide), bias.to(wide), freq.to(wide),
                                     shift.to(wide))
            x_c, w_c, b_c = x.to(dtype), w_mod.to(dtype), b_mod.to(dtype)
            out = torch.baddbmm(b_c[:, None, :], x_c, w_c.transpose(1, 2)).sin_()
        ctx.save_for_backward(x_c, w_c, b_c, weight, bias, freq)
        ctx.input_dtypes = (x.dtype, shift.dtype)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x_c, w_c, b_c, weight, bias, freq = ctx.saved_tensors
        x_dtype, shift_dtype = ctx.input_dtypes
        need_x, need_w, need_b, need_f, need_s = ctx.needs_input_grad
        grad_x = grad_weight = grad_bias = grad_freq = grad_shift = None
        with torch.autocast(x_c.device.type, enabled=False):
            # recompute the pre-activation, then dz = grad * cos(z) in the same buffer
            grad_z = torch.baddbmm(b_c[:, None, :], x_c, w_c.transpose(1, 2))
            grad_z.cos_().mul_(grad_out.to(grad_z.dtype))
            if need_x:
                grad_x = torch.bmm(grad_z, w_c).to(x_dtype)
            # the small tensors in fp32 (or wider): (B, O, I) and (B, O). The camera search
            # freezes the network and needs none of them: no weight-gradient matmul there.
            wide = _wide(weight.dtype)
            freq_w = freq.to(wide)
            if need_w or need_f:
                grad_w_mod = torch.bmm(grad_z.transpose(1, 2), x_c).to(wide)
                if need_w:
                    grad_weight = (grad_w_mod * freq_w[:, :, None]).sum(0).to(weight.dtype)
            if need_b or need_f or need_s:
                grad_b_mod = grad_z.sum(1).to(wide)  # sum(dtype=fp32) of bf16: 7x slower
                if need_b:
                    grad_bias = (grad_b_mod * freq_w).sum(0).to(bias.dtype)
                if need_f:
                    grad_freq = ((grad_w_mod * weight.to(wide)).sum(-1)
                                 + grad_b_mod * bias.to(wide)).to(freq.dtype)
                if need_s:
                    grad_shift = grad_b_mod.to(shift_dtype)
        return grad_x, grad_weight, grad_bias, grad_freq, grad_shift


def film_sine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, freq: torch.Tensor,
              shift: torch.Tensor) -> torch.Tensor:
    """The fused layer (:class:`FiLMSine`): ``(B, N, I) -> (B, N, O)``."""
    return FiLMSine.apply(x, weight, bias, freq, shift)


def film_sine_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        freq: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The same layer in plain autograd ops (the baseline path and the tests' reference)."""
    return torch.sin(torch.addcmul(shift[:, None], freq[:, None],
                                   torch.nn.functional.linear(x, weight, bias)))
