"""Mesh extraction and 3D metrics on analytic shapes."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from ss3d.eval import chamfer_fscore, extract_mesh, sample_mesh_surface, volumetric_iou


def sphere_points(radius: float, count: int, seed: int = 0) -> torch.Tensor:
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    return sample_mesh_surface(torch.tensor(mesh.vertices, dtype=torch.float32),
                               torch.tensor(mesh.faces), count, seed)


def ellipsoid_field(radii=(0.4, 0.25, 0.15), threshold_radius: float = 1.0):
    radii = torch.tensor(radii)

    def field(p: torch.Tensor):
        r = ((p / radii) ** 2).sum(-1, keepdim=True).sqrt()
        # density 5 (the default threshold) exactly at r = threshold_radius
        return p * 3.0, torch.relu(5.0 + 50.0 * (threshold_radius - r))

    return field


def test_identical_point_sets_score_perfectly():
    pts = sphere_points(0.4, 3000)
    m = chamfer_fscore(pts, pts.clone())
    assert m["chamfer_l1"] == 0.0 and m["chamfer_l2"] == 0.0
    assert m["fscore@0.05"] == 1.0 and m["fscore@0.1"] == 1.0


def test_concentric_spheres_have_known_chamfer():
    # every point's nearest neighbour on the other sphere is |r1 - r2| away (dense sampling)
    inner, outer = sphere_points(0.3, 20000, 1), sphere_points(0.38, 20000, 2)
    m = chamfer_fscore(inner, outer, thresholds=(0.05, 0.1))
    assert m["chamfer_l1"] == pytest.approx(0.08, abs=0.004)
    assert m["chamfer_l2"] == pytest.approx(0.08 ** 2, rel=0.1)
    assert m["fscore@0.05"] == 0.0  # 0.08 apart: nothing within 0.05
    assert m["fscore@0.1"] == 1.0


def test_fscore_counts_precision_and_recall_separately():
    truth = sphere_points(0.4, 4000)
    pred = torch.cat([truth[:2000], truth[:2000] + torch.tensor([2.0, 0, 0])])  # half far away
    m = chamfer_fscore(pred, truth, thresholds=(0.05,))
    assert m["precision@0.05"] == pytest.approx(0.5, abs=0.01)
    assert m["recall@0.05"] > 0.9
    assert m["fscore@0.05"] < 0.7


def test_volumetric_iou():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert volumetric_iou(a, b) == pytest.approx(1 / 3)
    assert volumetric_iou(a, a) == 1.0


def test_mesh_of_an_analytic_sphere_density_recovers_the_sphere():
    field = ellipsoid_field((0.4, 0.4, 0.4))
    mesh = extract_mesh(field, 64, 5.0)
    pred = sample_mesh_surface(mesh.verts, mesh.faces, 8000, 0)
    m = chamfer_fscore(pred, sphere_points(0.4, 8000))
    assert m["fscore@0.05"] >= 0.99
    assert m["chamfer_l1"] < 0.01
    # colours come from the colour head at the vertices (the field's logits are 3 p)
    assert torch.allclose(mesh.colors, torch.sigmoid(3.0 * mesh.verts), atol=1e-5)


def test_mesh_axes_follow_object_coordinates():
    mesh = extract_mesh(ellipsoid_field((0.4, 0.25, 0.15)), 64, 5.0)
    extent = mesh.verts.abs().max(0).values
    assert torch.allclose(extent, torch.tensor([0.4, 0.25, 0.15]), atol=0.02)


def test_coarse_to_fine_matches_dense_with_fewer_queries():
    field = ellipsoid_field((0.4, 0.25, 0.15))
    dense = extract_mesh(field, 65, 5.0)
    fine = extract_mesh(field, 65, 5.0, coarse_factor=4)
    assert fine.queries < 0.5 * dense.queries
    assert chamfer_fscore(fine.verts, dense.verts)["chamfer_l1"] < 1e-3
    assert fine.faces.shape[0] == pytest.approx(dense.faces.shape[0], rel=0.01)


@pytest.mark.parametrize("coarse_factor", [1, 4])
def test_peak_fraction_level_follows_a_deflated_field(coarse_factor: int):
    """A field whose whole density range shrank (as fine-tuning can do) keeps its shape at a
    peak-relative level; at the absolute level it all but vanishes."""
    radii = torch.tensor([0.4, 0.25, 0.15])
    field = ellipsoid_field(tuple(radii.tolist()))  # peak 55 at the centre (a grid point)

    def deflated(p):
        rgb, density = field(p)
        return rgb, 0.1 * density  # peak 5.5

    # level 0.5 x 55 = 27.5 lies at r = 1 - 22.5 / 50 = 0.55 of the radii, in both fields
    for f, peak in ((field, 55.0), (deflated, 5.5)):
        mesh = extract_mesh(f, 65, 5.0, peak_fraction=0.5, coarse_factor=coarse_factor)
        assert mesh.level == pytest.approx(0.5 * peak)
        extent = mesh.verts.abs().max(0).values
        assert torch.allclose(extent, 0.55 * radii, atol=0.02)
    absolute = extract_mesh(deflated, 65, 5.0, coarse_factor=coarse_factor)
    assert absolute.level == 5.0
    assert absolute.empty or absolute.verts.abs().max() < 0.1 * radii.max() + 0.02
    with pytest.raises(ValueError, match="peak_fraction"):
        extract_mesh(field, 17, 5.0, peak_fraction=1.0)


def test_empty_field_gives_an_empty_mesh_and_finite_metrics():
    mesh = extract_mesh(lambda p: (p, torch.zeros(*p.shape[:-1], 1)), 16, 5.0)
    assert mesh.empty
    pts = sample_mesh_surface(mesh.verts, mesh.faces, 100)
    m = chamfer_fscore(pts, sphere_points(0.4, 1000))
    assert math.isfinite(m["chamfer_l1"]) and m["fscore@0.1"] == 0.0


def test_learned_frame_alignment_maps_predictions_back_to_the_true_frame():
    """A model whose frame is turned by G about +Y sees the object from azimuth + delta; the
    alignment found from the cameras, applied by aligned_field, recovers the true shape."""
    from ss3d.cameras import Intrinsics
    from ss3d.hypotheses import best_alignment, rotation_matrices
    from ss3d.stages.evaluate import aligned_field
    from ss3d.volume import render_images

    true_field = ellipsoid_field((0.45, 0.2, 0.12))
    az_true = torch.tensor([10.0, 80.0, 150.0, 230.0, 300.0])
    el = torch.tensor([15.0, -10.0, 30.0, 5.0, 20.0])
    delta = 40.0
    r_true = rotation_matrices(az_true, el)
    r_pred = rotation_matrices(az_true + delta, el)
    g = best_alignment(r_pred, r_true)  # R_pred G = R_true, i.e. x_learned = G x_true

    class Learned:  # the same object expressed in the learned frame: f_l(x) = f_true(G^T x)
        def query(self, points, latent):
            return true_field(points @ g)

    intr = Intrinsics.from_fov(40.0, 24)
    dist = torch.full((5,), 2.0)
    seen_true = render_images(true_field, az_true, el, dist, intr, n_samples=48)
    seen_learned = render_images(lambda p: Learned().query(p, None), az_true + delta, el, dist,
                                 intr, n_samples=48)
    assert (seen_true["mask"] - seen_learned["mask"]).abs().mean() < 0.02
    aligned = aligned_field(Learned(), torch.zeros(1, 1), g)
    mesh = extract_mesh(aligned, 48, 5.0)
    extent = mesh.verts.abs().max(0).values
    assert torch.allclose(extent, torch.tensor([0.45, 0.2, 0.12]), atol=0.03)


def test_cpu_nearest_neighbours_match_pytorch3d_knn():
    """The CPU k-d tree path returns PyTorch3D's nearest neighbours (distances and indices)."""
    from pytorch3d.ops import knn_points

    from ss3d.eval.metrics import nearest_neighbours

    g = torch.Generator().manual_seed(0)
    query, points = torch.rand(500, 3, generator=g), torch.rand(700, 3, generator=g)
    dist, idx = nearest_neighbours(query, points)
    knn = knn_points(query[None], points[None], K=1)
    assert torch.equal(idx, knn.idx[0, :, 0])
    assert torch.allclose(dist, knn.dists[0, :, 0].sqrt(), atol=1e-6)


def _two_tone_ellipsoid(p: torch.Tensor):
    """Long along x, red on its +z side and blue on its -z side (colour logits ±6)."""
    radii = torch.tensor([0.4, 0.15, 0.15])
    r = ((p / radii) ** 2).sum(-1, keepdim=True).sqrt()
    front = (p[..., 2:3] > 0).float()
    rgb = torch.cat([12 * front - 6, torch.full_like(front, -6), 6 - 12 * front], -1)
    return rgb, torch.relu(5.0 + 50.0 * (1.0 - r))


def test_the_input_camera_is_the_grid_pose_that_explains_the_image_colours_included():
    from ss3d.cameras import Intrinsics
    from ss3d.config import ExperimentConfig
    from ss3d.eval.texture import input_view_camera
    from ss3d.scoring import pose_grid
    from ss3d.volume import render_network

    cfg = ExperimentConfig()
    azimuth, elevation, distance = pose_grid(cfg)
    # azimuth 225: its silhouette twin (45) comes first in the grid, and wins a tie
    true = 15 * len(cfg.selftrain.grid_elevations) * len(cfg.selftrain.grid_distances) + 4
    cam = (azimuth[true:true + 1], elevation[true:true + 1], distance[true:true + 1])
    size = cfg.selftrain.score_size
    out = render_network(_two_tone_ellipsoid, *cam, Intrinsics.from_fov(
        cfg.render.fov_degrees, size), cfg.model, 64)
    image, mask = out["rgb"][0].permute(2, 0, 1), out["mask"][0]
    # the silhouette alone has a twin half a turn away; the colours tell them apart, in the
    # exact search (every camera at full size) and coarse to fine (the default)
    for refine in (0, None, 4):
        found = input_view_camera(lambda n: _two_tone_ellipsoid, image, mask, cfg, refine=refine)
        assert found == (float(cam[0]), float(cam[1]), float(cam[2])), refine


@pytest.mark.parametrize("inward", [False, True])
def test_rasterising_only_the_front_faces_paints_what_all_faces_paint(monkeypatch, inward):
    """The back faces of a closed mesh never win the z-buffer: dropping them (half the
    rasteriser's work) leaves every colour as it was, with outward or inward normals."""
    import ss3d.eval.texture as texture
    from ss3d.eval.mesh import ExtractedMesh

    near = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    near.apply_translation((0.1, 0.05, 0.25))  # partly in front of the other from +z
    far = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    both = trimesh.util.concatenate([near, far])
    faces = torch.tensor(both.faces)
    faces = faces.flip(1) if inward else faces
    mesh = ExtractedMesh(torch.tensor(both.vertices, dtype=torch.float32), faces,
                         torch.full((len(both.vertices), 3), 0.5), 0)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(32, 32)
    for camera in ((0.0, 0.0, 2.0), (30.0, 40.0, 1.8), (200.0, -30.0, 2.2)):
        kept = texture._front_faces(mesh.verts, faces, camera)
        assert 0.3 < len(kept) / len(faces) < 0.7
        fast = texture.image_colours(mesh, image, mask, camera, 40.0).colors
        with monkeypatch.context() as m:
            m.setattr(texture, "_front_faces", lambda verts, faces, camera: faces)
            every = texture.image_colours(mesh, image, mask, camera, 40.0).colors
        assert torch.equal(fast, every), camera
        assert (fast != 0.5).any()  # something was painted


def test_image_colours_paint_the_seen_side_and_keep_the_field_elsewhere():
    from ss3d.cameras import Intrinsics, project_points
    from ss3d.eval.mesh import ExtractedMesh
    from ss3d.eval.texture import image_colours

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    verts = torch.tensor(sphere.vertices, dtype=torch.float32)
    grey = torch.full_like(verts, 0.5)
    mesh = ExtractedMesh(verts, torch.tensor(sphere.faces), grey, 0)
    size, camera = 32, (0.0, 0.0, 2.0)  # azimuth 0 looks from +z
    image = torch.zeros(3, size, size)
    image[0, :, :size // 2] = 1.0  # left half red
    image[2, :, size // 2:] = 1.0  # right half blue
    mask = torch.ones(size, size)
    painted = image_colours(mesh, image, mask, camera, 40.0)
    uv = project_points(verts[None], *camera, Intrinsics.from_fov(40.0, size))[0][0]
    # facing the camera within ~50 degrees (at grazing angles the surface's depth changes by
    # more than the tolerance within one pixel, and those vertices keep the field's colour),
    # a few pixels from the red/blue border and from the silhouette (the colours are averaged
    # over two rings of neighbours)
    front, back = verts[:, 2] > 0.25, verts[:, 2] < -0.1
    left, right = uv[:, 0] < size / 2 - 3, uv[:, 0] > size / 2 + 3
    assert torch.allclose(painted.colors[front & left], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(painted.colors[front & right], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(painted.colors[back], grey[back])  # hidden: the field's colours
    # between them a blend, never a colour of neither (no black from the background)
    rim = ~front & ~back
    assert (painted.colors[rim][:, 1] <= 0.5 + 1e-6).all()
    assert torch.allclose(painted.colors[rim].sum(1)[painted.colors[rim][:, 1] < 1e-6],
                          torch.tensor(1.0))
    assert torch.equal(mesh.colors, grey)  # the input mesh is left alone
    # off the object mask nothing is painted; the black background never leaks in
    half = mask.clone()
    half[:, size // 2:] = 0
    painted = image_colours(mesh, image, half, camera, 40.0)
    assert torch.equal(painted.colors[front & right], grey[front & right])
    assert torch.allclose(painted.colors[front & left], torch.tensor([1.0, 0.0, 0.0]))
