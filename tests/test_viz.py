"""The pictures' building blocks: cluster colours, the legend, the spotlight on one cluster."""

import numpy as np

from localedit import viz


def test_palette_never_repeats_a_colour():
    for k in (1, 20, 32, 64):
        colours = viz.palette(k)
        assert colours.shape == (k, 3) and colours.dtype == np.uint8
        assert len({tuple(c) for c in colours}) == k, k
    assert np.array_equal(viz.palette(40)[:32], viz.palette(32))  # a cluster keeps its colour as K grows


def test_legend_wraps_into_columns_within_a_height():
    colours = viz.palette(32)
    tall = viz.legend(colours)
    assert tall.height >= 32 * 18
    short = viz.legend(colours, {0: "mouth"}, height=260)
    assert short.height <= 260 and short.width == 120 * 3  # 14 entries per column
    assert np.asarray(short)[4:18, 4:18].tolist() == [[list(colours[0])] * 14] * 14  # entry 0's swatch


def test_spotlight_keeps_the_region_and_dims_the_rest():
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True
    out = viz.spotlight(image, mask)
    assert (out[mask] == 200).all()
    assert (out[~mask] < 100).all() and (out[~mask][:, 0] == out[~mask][:, 1]).all()  # dim and grey


def test_row_labels_caption_each_row():
    import numpy as np
    from PIL import Image

    from localedit.viz import with_row_labels

    sheet = Image.new("RGB", (200, 2 + 3 * 66), "gray")
    out = np.asarray(with_row_labels(sheet, ["references\n1 2", "eyes\ntarget 3", "mouth\ntarget 3"], 64))
    assert out.shape[:2] == (sheet.height, 200 + 96)
    strip = out[:, :96].min(axis=2)
    for r in range(3):  # some ink beside every row
        assert (strip[2 + r * 66: 2 + r * 66 + 64] < 128).any(), r
