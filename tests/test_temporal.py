"""Temporal residuals of a face against its ring: exact values on hand-made windows, and a
rendered face told from a filmed one by its flicker while the scene holds still."""

from __future__ import annotations

import numpy as np
import pytest

from noisetrace.residuals.temporal import (
    EPS,
    frame_changes,
    frame_jitter,
    jitter_index,
    ring_mask,
    still_flicker,
)


def test_ring_is_the_crop_margin_outside_the_face_box():
    ring = ring_mask(32)  # 1.3x square: margin round(32 * 0.115) + 4 = 8 px
    assert ring.shape == (32, 32) and ring.dtype == bool
    assert not ring[8:24, 8:24].any() and ring[:8].all() and ring[:, 24:].all()
    assert ring.sum() == 32 * 32 - 16 * 16
    with pytest.raises(ValueError, match="scale > 1"):
        ring_mask(32, scale=1.0)
    with pytest.raises(ValueError, match="no face"):
        ring_mask(10)


def test_frame_changes_on_a_hand_made_window():
    w = np.zeros((3, 32, 32, 3), np.uint8)
    w[1, 8:24, 8:24] = 10  # the face brightens by 10 grey levels, the ring by 2
    w[1][ring_mask(32)] = 2
    w[2] = w[1]  # then nothing moves
    got = frame_changes(w)
    assert got.shape == (2, 2) and got.dtype == np.float32
    want = np.log([[10 + EPS, 2 + EPS], [EPS, EPS]])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    hp = frame_changes(w, highpass=True)  # flat regions: the Laplacian changes only at edges
    assert hp.shape == (2, 2) and hp[1, 0] == pytest.approx(np.log(EPS))


def test_frame_changes_rejects_what_is_not_a_window():
    with pytest.raises(ValueError, match="square"):
        frame_changes(np.zeros((4, 32, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_changes(np.zeros((1, 32, 32, 3), np.uint8))


def test_still_flicker_reads_the_calmest_pairs():
    # rows: (face, ring). Calm pairs (ring 0.1) show the face 1.0 above; moving pairs 0.
    c = np.array([[1.1, 0.1], [5.0, 5.0], [1.1, 0.1], [6.0, 6.0], [1.1, 0.1], [4.0, 4.0]])
    assert still_flicker(c, still=0.5) == pytest.approx(1.0)
    assert still_flicker(c, still=1.0) == pytest.approx(0.5)
    assert still_flicker(c[:1], still=0.01) == pytest.approx(1.0)  # at least one pair
    with pytest.raises(ValueError, match="N, 2"):
        still_flicker(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="still"):
        still_flicker(c, still=0.0)


def _video(rng: np.random.Generator, rendered: bool, n: int = 24, talking: bool = False):
    """A textured head-and-shoulders scene, sensor noise in every frame, the camera panning
    now and then; ``rendered``: the face is re-synthesised each frame (its texture jitters);
    ``talking``: a mouth opens and closes smoothly inside the face."""
    scene = rng.uniform(40, 200, (96, 96, 3))
    face = rng.uniform(60, 180, (48, 48, 3))
    frames = []
    for t in range(n):
        img = scene.copy()
        f = face + (rng.normal(0, 5, face.shape) if rendered else 0)
        if talking:  # a dark mouth 4 to 12 px tall, opening over a few frames
            f = f.copy()
            f[30 : 30 + 4 + int(8 * abs(np.sin(t / 3))), 14:34] = 20
        img[24:72, 24:72] = f
        shift = 3 * t if t % 4 == 3 else 0  # every fourth frame the camera moves
        img = np.roll(img, shift, axis=1)
        frames.append(np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_a_rendered_face_flickers_more_than_a_filmed_one():
    rng = np.random.default_rng(0)
    # crops 1.3x the 48 px face box around it, as a face cropper cuts them: 62 px
    cut = slice(17, 79)
    real = [still_flicker(frame_changes(_video(rng, False)[:, cut, cut])) for _ in range(3)]
    fake = [still_flicker(frame_changes(_video(rng, True)[:, cut, cut])) for _ in range(3)]
    assert min(fake) > max(real) + 0.5
    # with every pair counted, camera motion swamps both and the gap shrinks
    moving = [still_flicker(frame_changes(_video(rng, True)[:, cut, cut]), still=1.0)
              for _ in range(3)]  # fmt: skip
    assert np.mean(moving) < np.mean(fake)


def test_frame_jitter_on_hand_made_windows():
    w = np.zeros((3, 32, 32, 3), np.uint8)
    w[1, 8:24, 8:24], w[2, 8:24, 8:24] = 10, 20  # the face brightens steadily: smooth change
    got = frame_jitter(w)
    assert got.shape == (1, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, [[np.log((10 + EPS) / (20 + EPS)), 0.0]], atol=1e-6)
    w[2, 8:24, 8:24] = 0  # ... or comes back: a flicker
    assert frame_jitter(w)[0, 0] == pytest.approx(np.log((10 + EPS) / EPS), rel=1e-5)
    assert jitter_index(frame_jitter(w)) == pytest.approx(np.log((10 + EPS) / EPS), rel=1e-5)
    with pytest.raises(ValueError, match="at least 3 frames"):
        frame_jitter(w[:2])
    with pytest.raises(ValueError, match="N, 2"):
        jitter_index(np.zeros((0, 2)))


def test_a_talking_face_raises_the_still_flicker_but_not_the_jitter_index():
    """Expression moves the face and not its ring: the still-scene flicker mistakes it for
    rendering; the jitter index, which asks whether the change comes back, does not."""
    rng = np.random.default_rng(1)
    cut = slice(17, 79)
    talk = [_video(rng, False, talking=True)[:, cut, cut] for _ in range(3)]
    still = [_video(rng, False)[:, cut, cut] for _ in range(3)]
    fake = [_video(rng, True, talking=True)[:, cut, cut] for _ in range(3)]
    flick = {k: [still_flicker(frame_changes(w)) for w in v]
             for k, v in (("talk", talk), ("still", still))}  # fmt: skip
    assert min(flick["talk"]) > max(flick["still"]) + 0.3
    jit = {k: [jitter_index(frame_jitter(w)) for w in v]
           for k, v in (("talk", talk), ("fake", fake))}  # fmt: skip
    assert min(jit["fake"]) > max(jit["talk"]) + 0.05
