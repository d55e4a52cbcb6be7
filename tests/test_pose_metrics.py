"""Pose metrics (:func:`ss3d.hypotheses.pose_metrics`) by value, on cases with known answers.

The self-training report, its headline (``pose_acc30_vertical``) and the sweeps judge poses by
these numbers. Each case builds a camera bank whose hypotheses are the true look-at cameras
moved in a way whose errors are known in closed form:

* an azimuth offset ``δ`` at any elevation is a turn of the object about the vertical by ``δ``
  (``R(az + δ, el)ᵀ R(az, el) = R_y(δ)``): a geodesic error of exactly ``|δ|``;
* an elevation offset ``ε`` at one azimuth is a turn about one horizontal axis, the same for
  every image: a full 3D alignment absorbs it, a turn about the vertical cannot (error ``ε``).

Each test names the mutation of ``ss3d/hypotheses.py`` it was seen to fail on.
"""

from __future__ import annotations

import pytest
import torch

from ss3d.hypotheses import (
    CameraBank,
    geodesic_degrees,
    pose_metrics,
    rotation_matrices,
    viewpoint_accuracy,
)

TOL = 0.05  # degrees: float32 rotations and the bank's tanh-encoded elevation


def _bank(azimuth: list[list[float]], elevation: list[list[float]]) -> CameraBank:
    """A bank whose ``(N, H)`` hypotheses are exactly these cameras (distance 2)."""
    az, el = torch.tensor(azimuth), torch.tensor(elevation)
    n, h = az.shape
    bank = CameraBank([f"img{i}" for i in range(n)], h, seed=0)
    bank.set_cameras(torch.arange(n), az, el, torch.full((n, h), 2.0))
    return bank


def _truth(azimuth: list[float], elevation: list[float]) -> dict[str, dict]:
    return {f"img{i}": {"azimuth": a, "elevation": e}
            for i, (a, e) in enumerate(zip(azimuth, elevation))}


def test_the_closed_forms_the_cases_rely_on():
    """An azimuth offset is an error of its size at any elevation, and an elevation offset
    is one rotation for every elevation at one azimuth (no mutation: checks the premise)."""
    az = torch.tensor([0.0, 75.0, 200.0, 330.0])
    el = torch.tensor([-20.0, 0.0, 35.0, 60.0])
    for delta in (5.0, 14.5, 29.5, 120.0, 180.0):
        errors = geodesic_degrees(rotation_matrices(az + delta, el), rotation_matrices(az, el))
        assert torch.allclose(errors, torch.full_like(errors, delta), atol=0.01), delta
    low = torch.tensor([-20.0, 0.0, 10.0, 20.0])  # + 40 stays below the pole
    up = rotation_matrices(torch.full((4,), 30.0), low + 40)
    base = rotation_matrices(torch.full((4,), 30.0), low)
    offsets = up.transpose(-1, -2) @ base
    assert torch.allclose(offsets, offsets[:1].expand_as(offsets), atol=1e-5)
    assert torch.allclose(geodesic_degrees(up, base), torch.full((4,), 40.0), atol=0.01)


def test_exact_poses_score_perfectly():
    """Mutation caught: ``errors < 30`` written ``errors > 30`` (every accuracy 0)."""
    az, el = [10.0, 100.0, 190.0, 280.0], [0.0, 20.0, -15.0, 45.0]
    metrics = pose_metrics(_bank([[a] for a in az], [[e] for e in el]), _truth(az, el),
                           torch.zeros(4, dtype=torch.long))
    assert metrics["pose_n"] == 4
    for key in ("pose_acc15", "pose_acc30", "pose_acc30_unaligned", "pose_best_of_h_acc30",
                "pose_acc30_vertical", "pose_best_of_h_acc30_vertical"):
        assert metrics[key] == 1.0, key
    for key in ("pose_median_deg", "pose_best_of_h_median_deg", "pose_median_deg_vertical"):
        assert metrics[key] == pytest.approx(0.0, abs=TOL), key


# Azimuth errors straddling both thresholds: 5 of 13 under 15°, 9 under 30°, median 15.5°.
DELTAS = [0.0, 5.0, -5.0, 14.5, -14.5, 15.5, -15.5, 29.5, -29.5, 30.5, -30.5, 60.0, -60.0]
TRUE_AZ = [float(37 * i % 360) for i in range(len(DELTAS))]
TRUE_EL = [float(-25 + 7 * i) for i in range(len(DELTAS))]


@pytest.mark.parametrize("turn", [0.0, 120.0, -100.0])
def test_thresholds_and_medians_in_a_frame_turned_about_the_vertical(turn):
    """The learned frame is turned by ``turn`` about the vertical (the hypotheses' azimuths
    all ``+turn``) and each chosen pose is off by a known ``δ`` on top. Both alignments undo
    the turn, so the errors are ``|δ|``: acc@15 = 5/13, acc@30 = 9/13, median 15.5°. The
    unaligned accuracy sees the turn. Hypothesis 1 is the true pose in the learned frame:
    best-of-H is perfect once aligned.

    Mutations caught: acc@15 with a 30° threshold (9/13); either threshold moved by a degree
    (the errors sit 0.5° either side of 15 and 30); the median replaced by the mean (about
    22.8°); best-of-H scored without the alignment and ``pose_acc30_unaligned`` taken after
    it (the turned frames fail both)."""
    n = len(DELTAS)
    chosen = [a + turn + d for a, d in zip(TRUE_AZ, DELTAS)]
    right = [a + turn for a in TRUE_AZ]
    bank = _bank([[c, r] for c, r in zip(chosen, right)], [[e, e] for e in TRUE_EL])
    metrics = pose_metrics(bank, _truth(TRUE_AZ, TRUE_EL), torch.zeros(n, dtype=torch.long))
    assert metrics["pose_n"] == n
    assert metrics["pose_acc15"] == pytest.approx(5 / 13)
    assert metrics["pose_acc30"] == pytest.approx(9 / 13)
    assert metrics["pose_median_deg"] == pytest.approx(15.5, abs=TOL)
    assert metrics["pose_acc30_vertical"] == pytest.approx(9 / 13)
    assert metrics["pose_median_deg_vertical"] == pytest.approx(15.5, abs=TOL)
    assert metrics["pose_best_of_h_acc30"] == 1.0
    assert metrics["pose_best_of_h_median_deg"] == pytest.approx(0.0, abs=TOL)
    assert metrics["pose_best_of_h_acc30_vertical"] == 1.0
    unaligned = (geodesic_degrees(rotation_matrices(torch.tensor(chosen), torch.tensor(TRUE_EL)),
                                  rotation_matrices(torch.tensor(TRUE_AZ),
                                                    torch.tensor(TRUE_EL))) < 30).float().mean()
    assert metrics["pose_acc30_unaligned"] == pytest.approx(float(unaligned))
    if turn == 0.0:
        assert metrics["pose_acc30_unaligned"] == pytest.approx(9 / 13)
    else:  # every unaligned error is at least |turn| - 60 = 40° or more
        assert metrics["pose_acc30_unaligned"] == 0.0


def test_mirrored_hypotheses_chosen_count_against_the_chosen_poses_only():
    """Two hypotheses per image, the true pose and its front/back mirror (azimuth + 180°), in
    a frame turned by 90°. Three of ten images pick the mirror: chosen acc@15 = acc@30 = 0.7
    (the alignment follows the majority, not the mirrors), best-of-H 1.0, median 0 (seven
    zeros of ten).

    Mutations caught: best-of-H taken over the chosen hypothesis only (0.7); the alignment
    fitted on all hypotheses instead of the chosen ones; the choice ignored (hypothesis 0
    scored for every image: 1.0)."""
    az = [float(36 * i) for i in range(10)]
    el = [float(-20 + 6 * i) for i in range(10)]
    turn = 90.0
    bank = _bank([[a + turn, a + turn + 180] for a in az], [[e, e] for e in el])
    choice = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 1, 0])
    metrics = pose_metrics(bank, _truth(az, el), choice)
    assert metrics["pose_acc15"] == pytest.approx(0.7)
    assert metrics["pose_acc30"] == pytest.approx(0.7)
    assert metrics["pose_acc30_vertical"] == pytest.approx(0.7)
    assert metrics["pose_median_deg"] == pytest.approx(0.0, abs=TOL)
    assert metrics["pose_best_of_h_acc30"] == 1.0
    assert metrics["pose_best_of_h_acc30_vertical"] == 1.0
    assert metrics["pose_acc30_unaligned"] == 0.0
    # the other choice: seven of ten mirrored is a learned frame turned by 270°, which the
    # alignment undoes (a frame's front is a convention of the learned model); the three
    # true poses are now the ones 180° off
    flipped = pose_metrics(bank, _truth(az, el), 1 - choice)
    assert flipped["pose_acc30"] == pytest.approx(0.7)
    assert flipped["pose_acc30_vertical"] == pytest.approx(0.7)
    assert flipped["pose_median_deg"] == pytest.approx(0.0, abs=TOL)
    assert flipped["pose_best_of_h_acc30"] == 1.0
    assert flipped["pose_acc30_unaligned"] == 0.0


def test_a_tilt_is_absorbed_by_the_full_alignment_but_not_about_the_vertical():
    """Every camera 40° higher than the truth, all seen from one azimuth: one rotation about
    a horizontal axis explains every pose, so the full 3D alignment scores them perfect, but
    the learned frame may honestly turn only about the vertical (our cameras fix up), and
    there every pose stays 40° off.

    Mutations caught: ``pose_acc30_vertical`` (and its median) computed after the full 3D
    alignment (1.0 / 0°); :func:`vertical_alignment` fitting an unrestricted rotation."""
    el = [-20.0, 0.0, 10.0, 20.0]
    az = [30.0] * 4
    bank = _bank([[a] for a in az], [[e + 40] for e in el])
    metrics = pose_metrics(bank, _truth(az, el), torch.zeros(4, dtype=torch.long))
    assert metrics["pose_acc30"] == 1.0 and metrics["pose_acc15"] == 1.0
    assert metrics["pose_median_deg"] == pytest.approx(0.0, abs=TOL)
    assert metrics["pose_acc30_vertical"] == 0.0
    assert metrics["pose_median_deg_vertical"] == pytest.approx(40.0, abs=TOL)
    assert metrics["pose_best_of_h_acc30_vertical"] == 0.0
    assert metrics["pose_acc30_unaligned"] == 0.0


def test_only_images_with_a_true_camera_are_scored_and_the_prefix_is_applied():
    """Mutation caught: ``pose_n`` counting the bank's images rather than the scored ones."""
    bank = _bank([[0.0], [90.0], [180.0], [270.0]], [[10.0]] * 4)
    truth = {"img0": {"azimuth": 0.0, "elevation": 10.0},
             "img2": {"azimuth": 200.0, "elevation": 10.0}}  # 20° off
    metrics = pose_metrics(bank, truth, torch.zeros(4, dtype=torch.long), prefix="test_")
    assert set(metrics) == {f"test_{k}" for k in pose_metrics(
        bank, truth, torch.zeros(4, dtype=torch.long))}
    assert metrics["test_pose_n"] == 2.0
    assert metrics["test_pose_acc30_unaligned"] == 1.0
    # whichever image the alignment follows, one is exact and the other 20° off
    assert metrics["test_pose_acc15"] == 0.5 and metrics["test_pose_acc30"] == 1.0
    assert pose_metrics(bank, {}, torch.zeros(4, dtype=torch.long)) == {}


def test_viewpoint_accuracy_counts_poses_strictly_within_30_degrees():
    """The pre-training's ``viewpoint_acc30`` and self-training's ``viewpoint_net_acc30``.

    Mutations caught: the threshold at 15° or at 45°; the predicted azimuth ignored (the
    true one used in its place)."""
    true_az = torch.tensor([0.0, 90.0, 180.0, 270.0, 45.0, 300.0])
    true_el = torch.tensor([0.0, 30.0, -20.0, 50.0, 10.0, 0.0])
    offsets = torch.tensor([0.0, 14.0, 29.5, 30.5, 44.0, 170.0])
    got = viewpoint_accuracy(true_az + offsets, true_el, true_az, true_el)
    assert got.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    tilted = viewpoint_accuracy(true_az, true_el + 29.5, true_az, true_el)
    assert tilted.tolist() == [1.0] * 6
