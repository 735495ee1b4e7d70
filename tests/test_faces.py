"""The procedural faces: deterministic by index, every part present, parts varying independently."""

import numpy as np
import pytest
import torch

from localedit.faces import PARTS, FaceDataset, render_arrays, render_face, tile


@pytest.fixture(scope="module")
def faces():
    return render_arrays(200, 64, offset=0)


def test_same_index_same_bytes_and_different_indices_differ():
    a_image, a_labels = render_face(12345)
    b_image, b_labels = render_face(12345)
    assert a_image.tobytes() == b_image.tobytes() and a_labels.tobytes() == b_labels.tobytes()
    c_image, c_labels = render_face(12346)
    assert not np.array_equal(a_image, c_image) and not np.array_equal(a_labels, c_labels)


def test_worker_processes_give_the_same_arrays():
    serial = render_arrays(12, 64, offset=7)
    parallel = render_arrays(12, 64, offset=7, workers=2, chunk=5)
    np.testing.assert_array_equal(serial[0], parallel[0])
    np.testing.assert_array_equal(serial[1], parallel[1])
    np.testing.assert_array_equal(serial[0][3], render_face(10)[0])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_dtypes_and_label_range(size):
    image, labels = render_face(3, size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert labels.shape == (size, size) and labels.dtype == np.uint8
    assert labels.max() < len(PARTS)


def test_negative_index_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        render_face(-1)


def test_every_part_appears_in_nearly_every_face(faces):
    _, labels = faces
    present = np.stack([(labels == k).reshape(len(labels), -1).any(1) for k in range(len(PARTS))], 1)
    rate = dict(zip(PARTS, present.mean(0), strict=True))
    for part in ("background", "skin", "eyes", "nose", "mouth"):
        assert rate[part] == 1.0, (part, rate[part])
    for part in ("hair", "eyebrows", "clothes", "ears"):
        assert rate[part] >= 0.95, (part, rate[part])


def test_images_are_varied_and_use_the_whole_range(faces):
    images, _ = faces
    per_image_mean = images.reshape(len(images), -1, 3).mean(1)
    assert per_image_mean.std(0).min() > 10  # backgrounds, skin and clothes differ between faces
    assert images.min() < 30 and images.max() > 225


def _mean_luminance(images: np.ndarray, labels: np.ndarray, part: str) -> np.ndarray:
    mask = labels == PARTS.index(part)
    lum = images.mean(-1)
    return np.array([lum[i][mask[i]].mean() if mask[i].any() else np.nan for i in range(len(images))])


def test_parts_vary_independently(faces):
    # A GAN can only learn independent parts from data where they are independent: hair and clothes colour
    # must not follow skin tone.
    images, labels = faces
    skin = _mean_luminance(images, labels, "skin")
    for part in ("hair", "clothes"):
        other = _mean_luminance(images, labels, part)
        ok = ~np.isnan(other)
        assert abs(np.corrcoef(skin[ok], other[ok])[0, 1]) < 0.25, part


def test_dataset_with_a_dataloader():
    loader = torch.utils.data.DataLoader(FaceDataset(10, size=32, offset=5), batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (4, 32, 32) and labels.dtype == torch.long
    assert images.min() >= -1.0 and images.max() <= 1.0
    np.testing.assert_array_equal(labels[0].numpy(), render_face(5, 32)[1])
    assert len(FaceDataset(10)) == 10
    with pytest.raises(IndexError):
        FaceDataset(10)[10]


def test_tile_layout():
    images = np.arange(3)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3).astype(np.uint8)
    grid = tile(images, columns=2, factor=2)
    assert grid.shape == (8, 8, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 4, 0] == 1 and grid[4, 0, 0] == 2 and grid[4, 4, 0] == 0


def test_a_swapped_stream_changes_that_part_alone():
    nose = PARTS.index("nose")
    image, labels = render_face(40)
    other_image, other_labels = render_face(41)
    swapped, swapped_labels = render_face(40, swap={"nose": 41})
    # Nothing but the nose changed: outside both noses, the pixels are the face's own.
    near = np.pad((labels == nose) | (swapped_labels == nose), 1)
    # A pixel's margin, where the anti-aliased edges mix.
    away = ~np.any([near[1 + dy:65 + dy, 1 + dx:65 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    np.testing.assert_array_equal(swapped[away], image[away])
    assert (swapped_labels != labels).any()
    # The nose is the other face's, where it sits on this face.
    assert (swapped_labels == nose).sum() == pytest.approx((other_labels == nose).sum(), rel=0.35)
    assert render_face(40, swap={"nose": 40})[0].tobytes() == image.tobytes()
    with pytest.raises(ValueError, match="unknown streams"):
        render_face(40, swap={"nostril": 41})
    with pytest.raises(ValueError, match="non-negative"):
        render_face(40, swap={"nose": -1})

