"""The ceiling: perfect edits made by the renderer's own part swap, measured as edits are."""

import pytest

from localedit.ceiling import ceiling


def test_a_perfect_nose_edit_changes_the_nose_alone_and_takes_its_outline():
    figures = ceiling("nose", 12, size=64)
    assert figures.pairs == 12
    assert figures.leak < 0.01  # only anti-aliased edge pixels outside the noses' masks change
    assert figures.visible > 0.5
    # Centred, the outline is the reference's; in place it barely overlaps the reference's nose.
    assert figures.shape_centred > 0.2 and figures.shape_centred > figures.shape


def test_parts_without_a_stream_of_their_own_are_refused():
    with pytest.raises(ValueError, match="shared colour stream"):
        ceiling("skin", 4)
    with pytest.raises(ValueError, match="at least 1"):
        ceiling("nose", 0)
