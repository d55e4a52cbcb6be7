from __future__ import annotations

import math

import pytest
import torch

from ss3d.cameras import (
    Intrinsics,
    camera_centers,
    camera_to_world_opengl,
    pixel_rays,
    pose_to_spherical,
    project_points,
    spherical_to_pytorch3d,
    to_pytorch3d_cameras,
)

AZ = torch.tensor([0.0, 37.0, 90.0, 181.0, 300.0, 359.0])
EL = torch.tensor([0.0, 30.0, -75.0, 74.9, -10.0, 45.0])
DIST = torch.tensor([2.0, 2.2, 1.5, 3.0, 2.4, 1.9])


def test_spherical_pose_round_trip():
    pose = camera_to_world_opengl(AZ, EL, DIST)
    az, el, dist = pose_to_spherical(pose)
    assert torch.allclose(az, AZ % 360, atol=1e-3)
    assert torch.allclose(el, EL, atol=1e-3)
    assert torch.allclose(dist, DIST, atol=1e-5)
    # rotation is orthonormal and right-handed
    rot = pose[:, :3, :3]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(6, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(6), atol=1e-5)


def test_pose_matches_pytorch3d_camera_centre_and_looks_at_origin():
    R, T = spherical_to_pytorch3d(AZ, EL, DIST)
    pose = camera_to_world_opengl(AZ, EL, DIST)
    assert torch.allclose(pose[:, :3, 3], camera_centers(AZ, EL, DIST), atol=1e-5)
    # OpenGL cameras look along -Z: -z axis points from the centre to the origin
    forward = -pose[:, :3, 2]
    to_origin = -pose[:, :3, 3] / pose[:, :3, 3].norm(dim=-1, keepdim=True)
    assert torch.allclose(forward, to_origin, atol=1e-5)
    # world +Y up projects upwards: camera up axis has a positive world-Y component
    assert (pose[:, 1, 1] > 0).all()
    assert R.shape == (6, 3, 3) and T.shape == (6, 3)


def test_azimuth_zero_looks_from_plus_z():
    pose = camera_to_world_opengl(0.0, 0.0, 2.0)[0]
    assert torch.allclose(pose[:3, 3], torch.tensor([0.0, 0.0, 2.0]), atol=1e-6)
    assert torch.allclose(pose[:3, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)  # right = +X


@pytest.mark.parametrize("principal", [(None, None), (30.0, 20.0)])
def test_projection_agrees_with_pytorch3d_and_rays(principal):
    intr = Intrinsics(focal=55.0, width=64, height=48, cx=principal[0], cy=principal[1])
    torch.manual_seed(0)
    points = torch.rand(6, 10, 3) - 0.5
    uv, depth = project_points(points, AZ, EL, DIST, intr)
    p3d = to_pytorch3d_cameras(AZ, EL, DIST, intr).transform_points_screen(points)[..., :2]
    assert torch.allclose(uv, p3d, atol=1e-3)
    assert (depth > 0).all()
    # the ray through the projected pixel passes through the point
    origins, dirs = pixel_rays(AZ, EL, DIST, intr, pixels=uv)
    offset = points - origins
    along = (offset * dirs).sum(-1, keepdim=True)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(6, 10), atol=1e-5)
    assert (offset - along * dirs).norm(dim=-1).max() < 1e-4
    assert torch.allclose(along.squeeze(-1), offset.norm(dim=-1), atol=1e-4)


def test_full_image_rays_centre_pixel_hits_origin():
    intr = Intrinsics.from_fov(40.0, 33)  # odd size: pixel 16 is the exact centre
    origins, dirs = pixel_rays(AZ, EL, DIST, intr)
    assert origins.shape == (6, 33 * 33, 3) and dirs.shape == (6, 33 * 33, 3)
    centre = 16 * 33 + 16
    t = DIST
    hit = origins[:, centre] + t[:, None] * dirs[:, centre]
    assert hit.abs().max() < 1e-4
    # pixel (row 0) is above the centre: its ray goes up in the camera frame
    pose = camera_to_world_opengl(AZ, EL, DIST)
    up = (dirs[:, 16] * pose[:, :3, 1]).sum(-1)
    assert (up > 0).all()


def test_focal_from_fov():
    intr = Intrinsics.from_fov(90.0, 100)
    assert math.isclose(intr.focal, 50.0, rel_tol=1e-6)


def test_gradients_reach_spherical_parameters():
    az = AZ.clone().requires_grad_(True)
    el = EL.clone().requires_grad_(True)
    dist = DIST.clone().requires_grad_(True)
    intr = Intrinsics.from_fov(40.0, 16)
    origins, dirs = pixel_rays(az, el, dist, intr)
    points = torch.rand(6, 4, 3) - 0.5
    uv, _ = project_points(points, az, el, dist, intr)
    (origins.sum() + dirs.pow(2).mul(torch.arange(3.0)).sum() + uv.sum()).backward()
    for p in (az, el, dist):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_edge_rays_land_on_the_silhouette_edge_where_thin_parts_are():
    """``edge_fraction`` draws rays from pixels whose 3×3 neighbourhood holds both foreground
    and background (checked against SciPy's morphology); a one-pixel "wing" gets a far larger
    share of them than of uniform rays; with no edge share the stream is unchanged."""
    from scipy import ndimage

    from ss3d.cameras import sample_pixels

    mask = torch.zeros(1, 32, 32)
    mask[0, 8:24, 8:24] = 1.0  # a body
    mask[0, 15, 24:31] = 1.0  # a one-pixel-thick wing
    inside = mask[0].numpy() > 0.5
    square = ndimage.generate_binary_structure(2, 2)
    edge = (ndimage.binary_dilation(inside, square)
            & ~ndimage.binary_erosion(inside, square, border_value=0))
    flat, centres = sample_pixels(mask, 4000, foreground_fraction=0.0, edge_fraction=1.0,
                                  generator=torch.Generator().manual_seed(0))
    assert edge.reshape(-1)[flat[0].numpy()].all()
    assert torch.equal(centres[0, :, 0], (flat[0] % 32).float() + 0.5)
    wing = torch.zeros_like(mask, dtype=torch.bool)
    wing[0, 15, 24:31] = True
    on_wing_edge = wing.reshape(-1)[flat[0]].float().mean()
    uniform, _ = sample_pixels(mask, 4000, foreground_fraction=0.0,
                               generator=torch.Generator().manual_seed(0))
    on_wing_uniform = wing.reshape(-1)[uniform[0]].float().mean()
    assert on_wing_edge > 5 * on_wing_uniform
    # edge_fraction = 0 draws nothing for the edge: the same pixels as before the option
    a = sample_pixels(mask, 64, 0.3, torch.Generator().manual_seed(1))[0]
    b = sample_pixels(mask, 64, 0.3, torch.Generator().manual_seed(1), edge_fraction=0.0)[0]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="at most 1"):
        sample_pixels(mask, 10, foreground_fraction=0.6, edge_fraction=0.5)
    # shares the config accepts never fail on rounding: 0.5 + 0.5 of 3 rays is 2 + 1
    flat, _ = sample_pixels(mask, 3, foreground_fraction=0.5, edge_fraction=0.5)
    assert flat.shape == (1, 3) and inside.reshape(-1)[flat[0, :2].numpy()].all()
