"""Composites: the claim rule, one row equal to the single edit, the sum of the rows, and bad input by row."""

import numpy as np
import pytest
import torch

from localedit.composite import MAX_ROWS, composite, parse_row, resolve_composite
from localedit.edit import Editor, to_uint8
from localedit.query import claim


def test_a_channel_several_rows_move_goes_to_the_part_with_the_largest_m():
    q_a = {"l": torch.tensor([1.0, 0.5, 0.0, 1.0, 0.25])}
    q_b = {"l": torch.tensor([1.0, 1.0, 1.0, 0.0, 0.25]), "rgb": torch.tensor([1.0, 0.0])}
    m_a = {"l": torch.tensor([0.9, 0.1, 0.9, 0.2, 0.5])}
    m_b = {"l": torch.tensor([0.2, 0.3, 0.1, 0.9, 0.5]), "rgb": torch.tensor([0.5, 0.5])}
    a, b = claim([q_a, q_b], [m_a, m_b])
    # Channel 0: both move it, a's M is larger. 1: b's M is larger. 2 and 3: only one row moves it, whatever M
    # says. 4: a tie goes to the earlier row. A layer only one row has is left as it is.
    assert a["l"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.25]
    assert b["l"].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert b["rgb"].tolist() == [1.0, 0.0] and "rgb" not in a
    assert q_a["l"].tolist() == [1.0, 0.5, 0.0, 1.0, 0.25]  # the inputs are not changed
    # No overlap: the queries come back equal.
    alone = claim([q_a], [m_a])[0]
    assert torch.equal(alone["l"], q_a["l"])
    with pytest.raises(ValueError, match="no M row"):
        claim([q_a, q_b], [{}, m_b])
    with pytest.raises(ValueError, match="one relevance per query"):
        claim([q_a, q_b], [m_a])


def test_one_row_is_the_single_edit_byte_for_byte(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    for part, eps in (("eyes", None), ("mouth", 4.5)):
        single = editor.edit(3, 7, part, epsilon=eps, truncation=0.6)
        result = composite(editor, 3, [(part, 7, eps)], truncation=0.6)
        assert np.array_equal(result.edited, single.edited)
        assert np.array_equal(result.diff, single.diff) and np.array_equal(result.rois[part], single.roi)
        assert result.in_mse[part] == single.in_mse and result.out_mse == single.out_mse
        assert result.changed[part] == sum(single.changed.values())


def test_rows_sum_their_claimed_terms_and_stay_out_of_each_others_channels(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    result = composite(editor, 1, [("eyes", 2, 30.0), ("mouth", 5, 40.0)])
    params = result.params
    queries = claim([editor.query(row.query) for row in params.rows],
                    [editor.part_rows(row.part) for row in params.rows])
    assert any(bool((a > 0).any()) for a in queries[0].values()) and any(bool((b > 0).any()) for b in
                                                                         queries[1].values())
    target = editor.sample(1, params.truncation).styles
    refs = [editor.sample(seed, params.truncation).styles for seed in (2, 5)]
    styles = {}
    for layer, t in target.items():  # σ_G = σ_T + Σ_rows q_row ⊙ (σ_R,row − σ_T), written out
        total = t.clone()
        for q, ref in zip(queries, refs, strict=True):
            if layer in q:
                total = total + q[layer] * (ref[layer] - t)
        styles[layer] = total
        overlap = sum((q[layer] > 0).int() for q in queries if layer in q)
        assert not isinstance(overlap, torch.Tensor) or int(overlap.max()) <= 1  # a channel has one owner
    with torch.inference_mode():
        expected = to_uint8(tiny_generator.synthesize(styles))
    assert np.abs(expected.astype(int) - result.edited.astype(int)).max() <= 1
    # Both references show: the composite is neither single edit.
    assert not np.array_equal(result.edited, editor.edit(1, 2, "eyes", epsilon=30.0).edited)
    assert not np.array_equal(result.edited, editor.edit(1, 5, "mouth", epsilon=40.0).edited)
    assert set(result.rois) == {"eyes", "mouth"} and len(result.references) == 2


def test_bad_rows_are_refused_by_row(tiny_generator, tiny_catalog):
    editor = Editor(tiny_generator, tiny_catalog)
    cases = [
        ([], "at least one row"),
        ([("eyes", 1), ("eyes", 2)], r"row 2 \(eyes\): part 'eyes' is already in row 1"),
        ([("eyes", 1), ("nose", 2)], r"row 2 \(nose\): unknown part 'nose'"),
        ([("eyes", -1)], r"row 1 \(eyes\): reference seed must be a whole number"),
        ([("eyes", 1.5)], r"row 1 \(eyes\): reference seed"),
        ([("mouth", 1, -2.0)], r"row 1 \(mouth\): epsilon must be"),
        ([("eyes",)], "row 1: must be"),
        ([(["eyes"], 1)], "the part must be a name"),
        ("eyes=1", "must be a list"),
        ([("eyes", 1)] * (MAX_ROWS + 1), f"at most {MAX_ROWS} rows"),
    ]
    for rows, message in cases:
        with pytest.raises(ValueError, match=message):
            resolve_composite(editor, 0, rows)
    with pytest.raises(ValueError, match="target seed"):
        resolve_composite(editor, -3, [("eyes", 1)])


def test_parse_row():
    assert parse_row("hair=7") == ("hair", 7, None)
    assert parse_row(" eyes = 12:30 ") == ("eyes", 12, 30.0)
    assert parse_row("mouth=40:2.5") == ("mouth", 40, 2.5)
    for bad, message in (("hair", "PART=SEED"), ("hair=", "PART=SEED"), ("=7", "PART=SEED"),
                         ("hair=x", "whole number"), ("hair=7:y", "ε must be a number"), (7, "PART=SEED")):
        with pytest.raises(ValueError, match=message):
            parse_row(bad)
