"""Composites: the claim rule, one row equal to the single edit, the sum of the rows, and bad input by row."""

import math

import numpy as np
import pytest
import torch

from localedit import share
from localedit.composite import MAX_ROWS, RowError, composite, parse_row, resolve_composite, resolve_row
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


def test_one_check_of_a_row_for_the_library_and_for_links(tiny_generator, tiny_catalog):
    """resolve_row is the one check of a row: a composite with a bad row is refused with its message, and a
    link's composite leaves that row out (or, for a bad ε, takes the part's) with the same message."""
    editor = Editor(tiny_generator, tiny_catalog)
    controls = share.Controls("tiny", 1, 2, "eyes", 30.0, "sequential", 0.1, 1.0, 0.7)
    cases = [("eyes:1,eyes:2", [("eyes", 1), ("eyes", 2)], "part", "left out"),
             ("eyes:1,nose:2", [("eyes", 1), ("nose", 2)], "part", "left out"),
             ("eyes:1,mouth:-1", [("eyes", 1), ("mouth", "-1")], "reference", "left out"),  # a link's text
             ("eyes:1,mouth:1.5", [("eyes", 1), ("mouth", "1.5")], "reference", "left out"),
             ("mouth:3:nan", [("mouth", 3, math.nan)], "epsilon", "using 10"),
             ("mouth:3:x", [("mouth", 3, "x")], "epsilon", "using 10")]
    for link, rows, field, fallback in cases:
        with pytest.raises(RowError) as refused:
            resolve_composite(editor, 1, rows)
        assert refused.value.field == field and str(refused.value).startswith(f"row {len(rows)} (")
        c, notices = share.parse_composite({"composite": link}, controls, editor)
        assert notices == [f"composite {refused.value}; {fallback}"]
        assert len(c.rows) == len(rows) - (fallback == "left out")
    assert share.parse_composite({"composite": "mouth:3:x"}, controls, editor)[0].rows == (("mouth", 3, 10.0),)
    # A row the link leaves out keeps its number: the rows after it are named by their place in the link.
    _, notices = share.parse_composite({"composite": "nose:1,eyes:2,eyes:3"}, controls, editor)
    assert [n.split(":")[0] for n in notices] == ["composite row 1 (nose)", "composite row 3 (eyes)"]
    assert "already in row 2" in notices[1]
    assert resolve_row(editor, 1, ("mouth", 4, None), {}).epsilon == 10.0
    with pytest.raises(RowError, match=r"^row 5: must be") as refused:
        resolve_row(editor, 5, "mouth=4", {})
    assert refused.value.field == "row"


def test_parse_row():
    assert parse_row("hair=7") == ("hair", 7, None)
    assert parse_row(" eyes = 12:30 ") == ("eyes", 12, 30.0)
    assert parse_row("mouth=40:2.5") == ("mouth", 40, 2.5)
    for bad, message in (("hair", "PART=SEED"), ("hair=", "PART=SEED"), ("=7", "PART=SEED"),
                         ("hair=x", "whole number"), ("hair=7:y", "ε must be a number"), (7, "PART=SEED")):
        with pytest.raises(ValueError, match=message):
            parse_row(bad)


def test_a_latent_target_and_reference_composite_like_their_seeds(tiny_generator, tiny_catalog):
    from localedit.edit import Latent
    from localedit.stylegan2 import seed_to_z

    g = tiny_generator
    editor = Editor(g, tiny_catalog)

    def latent(seed):
        with torch.inference_mode():
            return Latent.of(g.truncate(g.mapping(seed_to_z(seed, g.style_dim)), 0.7).expand(g.n_latent, -1))

    by_seed = composite(editor, 1, [("eyes", 2), ("mouth", 5)], truncation=0.7)
    by_latent = composite(editor, latent(1), [("eyes", latent(2)), ("mouth", 5)], truncation=0.7)
    assert np.array_equal(by_latent.edited, by_seed.edited)
