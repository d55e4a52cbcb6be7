"""Multi-hypothesis camera bank for self-training (README: Self-training).

Every image of a collection owns ``H`` camera hypotheses and ``H`` logits of a categorical
distribution over them, stored as ``(N, H)`` tensors keyed by the collection's stable image ids
(never one file per image), saved in every checkpoint and restored on resume.

Parameterisation keeps the optimiser in range without clamping:

    azimuth   = raw_azimuth (degrees, periodic)
    elevation = max_elevation · tanh(raw_elevation)
    distance  = d_min + (d_max - d_min) · sigmoid(raw_distance)
    offset    = max_offset · tanh(raw_offset)   (only with ``offsets=True``)

The offset ``(du, dv)`` is a principal-point shift in fractions of the image side
(:func:`ss3d.cameras.principal_points`): a photo cropped square around its object's box puts
the object's origin wherever the box left it, which a camera looking at the origin with a
centred principal point cannot represent; an offset can. Rotations, and so every pose metric,
ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = [
    "CameraBank", "aligned_rotation_errors", "best_alignment", "geodesic_degrees",
    "pose_metrics", "rotation_matrices", "vertical_alignment", "vertical_turn",
    "viewpoint_accuracy",
]


class CameraBank:
    """``(N, H)`` hypotheses and logits for the images ``image_ids`` (in dataset order)."""

    def __init__(self, image_ids: Sequence[str], hypotheses: int,
                 elevation_range: tuple[float, float] = (-30.0, 60.0),
                 distance_range: tuple[float, float] = (1.0, 3.0), seed: int = 0,
                 offsets: bool = False):
        self.image_ids = list(image_ids)
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError("camera bank image ids must be unique")
        self.hypotheses = int(hypotheses)
        self.max_elevation = 85.0
        self.distance_range = (float(distance_range[0]), float(distance_range[1]))
        n, h = len(self.image_ids), self.hypotheses
        g = torch.Generator().manual_seed(seed)
        # spread over azimuth: hypothesis k starts in the k-th of H equal sectors
        sector = 360.0 / h
        azimuth = (torch.arange(h).float() * sector)[None] + torch.rand(n, h, generator=g) * \
            sector
        lo, hi = elevation_range
        elevation = lo + (hi - lo) * torch.rand(n, h, generator=g)
        d0, d1 = self.distance_range
        distance = d0 + (d1 - d0) * (0.25 + 0.5 * torch.rand(n, h, generator=g))
        self.raw_azimuth, self.raw_elevation, self.raw_distance = self.encode(
            azimuth, elevation, distance)
        self.logits = torch.zeros(n, h)
        # principal-point offsets (n, H, 2), raw; drawn from no generator, so a bank without
        # offsets is the bank it was before they existed
        self.use_offsets = bool(offsets)
        self.max_offset = 0.5
        self.raw_offset = torch.zeros(n, h, 2)
        # where each hypothesis' azimuth started (re-set by set_anchors after an
        # initialisation): the centre of its bounded search (selftrain.max_azimuth_offset)
        self.anchor_azimuth = self.raw_azimuth.clone()

    def set_anchors(self) -> None:
        """Make the current azimuths the centres of the bounded search."""
        self.anchor_azimuth = self.raw_azimuth.clone()

    def bound_azimuth(self, azimuth: torch.Tensor, index: torch.Tensor,
                      max_offset: float) -> torch.Tensor:
        """``azimuth (B, H)`` of images ``index`` moved back to within ``max_offset`` degrees
        of each hypothesis' anchor (the shorter way round the circle); ``max_offset <= 0``
        leaves it unbounded."""
        if max_offset <= 0:
            return azimuth
        anchor = self.anchor_azimuth[index.cpu()].to(azimuth)
        offset = torch.remainder(azimuth - anchor + 180.0, 360.0) - 180.0
        return anchor + offset.clamp(-max_offset, max_offset)

    def __len__(self) -> int:
        return len(self.image_ids)

    def encode(self, azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw parameters of decoded cameras (the inverse of :meth:`decode`, clamped in range)."""
        d0, d1 = self.distance_range
        raw_elevation = torch.atanh((elevation / self.max_elevation).clamp(-0.999, 0.999))
        fraction = ((distance - d0) / (d1 - d0)).clamp(1e-4, 1 - 1e-4)
        return azimuth.clone(), raw_elevation, torch.log(fraction / (1 - fraction))

    def set_cameras(self, index: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
                    distance: torch.Tensor) -> None:
        """Overwrite the hypotheses of images ``index (B,)`` with decoded ``(B, H)`` cameras."""
        self.set_raw(index, self.encode(azimuth.cpu(), elevation.cpu(), distance.cpu()))

    def decode(self, raw_azimuth: torch.Tensor, raw_elevation: torch.Tensor,
               raw_distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d0, d1 = self.distance_range
        return (raw_azimuth, self.max_elevation * torch.tanh(raw_elevation),
                d0 + (d1 - d0) * torch.sigmoid(raw_distance))

    def raw(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Raw parameters of the images ``index (B,)`` (copies): three ``(B, H)`` tensors, and
        the ``(B, H, 2)`` raw offsets as a fourth when the bank has offsets."""
        index = index.cpu()
        raw = (self.raw_azimuth[index].clone(), self.raw_elevation[index].clone(),
               self.raw_distance[index].clone())
        return raw + (self.raw_offset[index].clone(),) if self.use_offsets else raw

    def set_raw(self, index: torch.Tensor, raw: Sequence[torch.Tensor]) -> None:
        """Overwrite the raw parameters of images ``index (B,)`` (as :meth:`raw` gives them)."""
        index = index.cpu()
        self.raw_azimuth[index] = raw[0].detach().cpu()
        self.raw_elevation[index] = raw[1].detach().cpu()
        self.raw_distance[index] = raw[2].detach().cpu()
        if len(raw) > 3:
            self.raw_offset[index] = raw[3].detach().cpu()

    def decode_offset(self, raw_offset: torch.Tensor | None) -> torch.Tensor | None:
        """Offsets ``(..., 2)`` of raw ones (None stays None)."""
        return None if raw_offset is None else self.max_offset * torch.tanh(raw_offset)

    def offsets(self, index: torch.Tensor | None = None) -> torch.Tensor | None:
        """Decoded principal-point offsets ``(B, H, 2)`` (or ``(N, H, 2)``); None when the bank
        has none (every camera centred)."""
        if not self.use_offsets:
            return None
        raw = self.raw_offset if index is None else self.raw_offset[index.cpu()]
        return self.decode_offset(raw.clone())

    def set_offsets(self, index: torch.Tensor, offset: torch.Tensor) -> None:
        """Overwrite the offsets of images ``index (B,)`` with decoded ``(B, H, 2)`` ones."""
        fraction = (offset.detach().cpu() / self.max_offset).clamp(-0.999, 0.999)
        self.raw_offset[index.cpu()] = torch.atanh(fraction)

    def cameras(self, index: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoded ``azimuth, elevation, distance``, each ``(B, H)`` (or ``(N, H)``)."""
        if index is None:
            index = torch.arange(len(self))
        return self.decode(*self.raw(index)[:3])

    def weights(self, index: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.logits if index is None else self.logits[index.cpu()]
        return torch.softmax(logits, dim=-1)

    def state_dict(self) -> dict:
        state = {"image_ids": list(self.image_ids), "hypotheses": self.hypotheses,
                "distance_range": self.distance_range, "max_elevation": self.max_elevation,
                "raw_azimuth": self.raw_azimuth.clone(),
                "raw_elevation": self.raw_elevation.clone(),
                "raw_distance": self.raw_distance.clone(), "logits": self.logits.clone(),
                "anchor_azimuth": self.anchor_azimuth.clone()}
        if self.use_offsets:  # banks without offsets are saved as they were before them
            state.update(raw_offset=self.raw_offset.clone(), max_offset=self.max_offset)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore hypotheses by image id (the dataset order may differ)."""
        position = {image_id: i for i, image_id in enumerate(state["image_ids"])}
        missing = [i for i in self.image_ids if i not in position]
        if missing:
            raise ValueError(f"camera bank has no hypotheses for image ids {missing[:5]}")
        if state["hypotheses"] != self.hypotheses:
            raise ValueError(f"camera bank has {state['hypotheses']} hypotheses per image, "
                             f"config asks for {self.hypotheses}")
        if "raw_offset" in state and not self.use_offsets:
            raise ValueError("the saved camera bank has principal-point offsets and this run "
                             "has none: resume with selftrain.offsets=true (the setting it was "
                             "trained with)")
        rows = torch.tensor([position[i] for i in self.image_ids], dtype=torch.long)
        self.distance_range = tuple(state["distance_range"])
        self.max_elevation = state["max_elevation"]
        for key in ("raw_azimuth", "raw_elevation", "raw_distance", "logits"):
            setattr(self, key, state[key][rows].clone())
        # banks saved before bounded search existed: anchored where they are
        anchors = state.get("anchor_azimuth", state["raw_azimuth"])
        self.anchor_azimuth = anchors[rows].clone()
        # banks saved before offsets existed (or without them): every camera centred
        if "raw_offset" in state:
            self.max_offset = float(state["max_offset"])
            self.raw_offset = state["raw_offset"][rows].clone()
        else:
            self.raw_offset = torch.zeros(len(self.image_ids), self.hypotheses, 2)


def rotation_matrices(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """World-to-view rotations ``(..., 3, 3)`` of look-at cameras (distance does not matter)."""
    from ss3d.cameras import spherical_to_pytorch3d

    shape = azimuth.shape
    R, _ = spherical_to_pytorch3d(azimuth.reshape(-1).float(), elevation.reshape(-1).float(),
                                  torch.ones(azimuth.numel()))
    return R.transpose(1, 2).reshape(*shape, 3, 3)  # PyTorch3D's R is for row vectors


def geodesic_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle of ``a^T b`` in degrees, batched ``(..., 3, 3)``."""
    m = a.transpose(-1, -2) @ b
    cos = (m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    skew = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                        m[..., 1, 0] - m[..., 0, 1]], dim=-1)
    # atan2(sin, cos) stays precise near 0° and 180°, where acos(cos) loses float32 digits
    return torch.rad2deg(torch.atan2(skew.norm(dim=-1) / 2, cos))


def viewpoint_accuracy(azimuth: torch.Tensor, elevation: torch.Tensor,
                       true_azimuth: torch.Tensor, true_elevation: torch.Tensor) -> torch.Tensor:
    """Per-image ``(N,)`` 1 where the predicted look-at rotation is within 30° of the true one."""
    return (geodesic_degrees(rotation_matrices(azimuth.cpu(), elevation.cpu()),
                             rotation_matrices(true_azimuth.cpu(), true_elevation.cpu()))
            < 30).float()


def _project_so3(m: torch.Tensor) -> torch.Tensor:
    u, _, vt = torch.linalg.svd(m)
    d = torch.sign(torch.linalg.det(u @ vt))
    return u @ torch.diag(torch.tensor([1.0, 1.0, float(d)], dtype=m.dtype)) @ vt


def _robust_alignment(pred: torch.Tensor, truth: torch.Tensor, inlier_degrees: float,
                      candidate: Callable[[torch.Tensor], torch.Tensor],
                      project: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The alignment ``G`` most images agree with: every image proposes ``candidate(G_i)``
    with ``G_i = R_pred_i^T R_true_i`` (and the identity is a candidate); the proposal with most
    images within ``inlier_degrees`` wins (ties: lower median error), then it is refined as
    ``project`` of the mean proposal of its inliers."""
    candidates = torch.cat([torch.eye(3)[None],
                            candidate(pred.transpose(-1, -2) @ truth)])  # (N+1, 3, 3)
    errors = geodesic_degrees(pred[None] @ candidates[:, None], truth[None])  # (N+1, N)
    inliers = (errors < inlier_degrees).sum(-1).float()
    score = inliers - 1e-3 * errors.median(-1).values / 180.0
    best = int(score.argmax())
    g = candidates[best]
    mask = errors[best] < inlier_degrees
    if mask.sum() >= 3:
        g = project((pred[mask].transpose(-1, -2) @ truth[mask]).mean(0))
    return g


def best_alignment(pred: torch.Tensor, truth: torch.Tensor,
                   inlier_degrees: float = 30.0) -> torch.Tensor:
    """The global rotation ``G`` of the learned object frame that best explains the poses.

    With world-to-view rotations, a learned frame rotated by ``G`` gives ``R_pred G ≈ R_true``.
    Least squares over all images is dragged away by wrong picks (front/back flips), so ``G`` is
    chosen robustly (:func:`_robust_alignment`) and refined by Procrustes on its inliers.
    """
    return _robust_alignment(pred, truth, inlier_degrees, lambda m: m, _project_so3)


def vertical_turn(m: torch.Tensor) -> torch.Tensor:
    """The angle ``θ (...)`` in radians of the rotation about +Y (the object's up axis) nearest
    to ``m (..., 3, 3)`` in the Frobenius sense: ``θ = atan2(m02 - m20, m00 + m22)``."""
    return torch.atan2(m[..., 0, 2] - m[..., 2, 0], m[..., 0, 0] + m[..., 2, 2])


def _about_vertical(m: torch.Tensor) -> torch.Tensor:
    """The rotations about +Y nearest to ``m (..., 3, 3)`` (:func:`vertical_turn`)."""
    theta = vertical_turn(m)
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1),
                        torch.stack([-s, zero, c], -1)], -2)


def vertical_alignment(pred: torch.Tensor, truth: torch.Tensor,
                       inlier_degrees: float = 30.0) -> torch.Tensor:
    """:func:`best_alignment` restricted to rotations about the up axis (+Y).

    Our cameras fix "up" (look-at cameras with +Y up), so a learned frame can only be honestly
    wrong about where its front is, i.e. by a rotation about the vertical; a full 3D alignment
    can also tilt the frame to absorb errors the cameras cannot make, and so flatters the
    poses. Chosen as robustly: every image proposes its nearest rotation about +Y, refined by
    least squares about +Y on the inliers.
    """
    return _robust_alignment(pred, truth, inlier_degrees, _about_vertical, _about_vertical)


def aligned_rotation_errors(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Errors ``(N,)`` in degrees after :func:`best_alignment` of the learned frame."""
    return geodesic_degrees(pred @ best_alignment(pred, truth), truth)


def _chosen_and_true(bank: CameraBank, truth: dict[str, dict], choice: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Rotations of all hypotheses ``(n, H, 3, 3)``, the chosen ``(n, 3, 3)`` and the true
    ``(n, 3, 3)`` of the bank's images that have a true camera."""
    ids = [i for i in bank.image_ids if i in truth]
    if not ids:
        return None
    rows = torch.tensor([bank.image_ids.index(i) for i in ids])
    az, el, _ = bank.cameras(rows)
    pred_all = rotation_matrices(az, el)  # (n, H, 3, 3)
    true = rotation_matrices(torch.tensor([truth[i]["azimuth"] for i in ids]),
                             torch.tensor([truth[i]["elevation"] for i in ids]))
    return pred_all, pred_all[torch.arange(len(ids)), choice[rows]], true


def frame_alignment(bank: CameraBank, truth: dict[str, dict],
                    choice: torch.Tensor) -> torch.Tensor | None:
    """``G (3, 3)`` with ``x_learned = G x_true`` (see :func:`best_alignment`), or None."""
    found = _chosen_and_true(bank, truth, choice)
    return None if found is None else best_alignment(found[1], found[2])


def pose_metrics(bank: CameraBank, truth: dict[str, dict], choice: torch.Tensor,
                 prefix: str = "") -> dict[str, float]:
    """Pose accuracy of the chosen hypotheses (and best-of-H) against hidden true cameras,
    after the full 3D alignment of the learned frame (``pose_acc30``, ...) and after the
    alignment about the vertical only (``..._vertical``, :func:`vertical_alignment`)."""
    found = _chosen_and_true(bank, truth, choice)
    if found is None:
        return {}
    pred_all, chosen, true = found
    g = best_alignment(chosen, true)
    errors = geodesic_degrees(chosen @ g, true)
    raw_errors = geodesic_degrees(chosen, true)
    # best of H, in the frame aligned on the chosen hypotheses
    best = geodesic_degrees(pred_all @ g, true[:, None]).min(dim=1).values
    # the honest reading: the learned frame may only turn about the vertical
    v = vertical_alignment(chosen, true)
    vertical = geodesic_degrees(chosen @ v, true)
    best_vertical = geodesic_degrees(pred_all @ v, true[:, None]).min(dim=1).values
    out = {"pose_n": float(len(errors)),  # images scored: the Wilson intervals need it
           "pose_acc15": float((errors < 15).float().mean()),
           "pose_acc30": float((errors < 30).float().mean()),
           "pose_median_deg": float(errors.median()),
           "pose_acc30_unaligned": float((raw_errors < 30).float().mean()),
           "pose_best_of_h_acc30": float((best < 30).float().mean()),
           "pose_best_of_h_median_deg": float(best.median()),
           "pose_acc30_vertical": float((vertical < 30).float().mean()),
           "pose_median_deg_vertical": float(vertical.median()),
           "pose_best_of_h_acc30_vertical": float((best_vertical < 30).float().mean())}
    return {f"{prefix}{k}": v for k, v in out.items()}

