import numpy as np
import pytest

from migalab.data.skeleton.layouts import (
    LAYOUTS,
    NUM_OPENPOSE,
    JointLayout,
    check_layout,
    get_layout,
    openpose137_mirror,
    openpose137_names,
)


def test_openpose_names_and_mirror():
    names = openpose137_names()
    assert len(names) == NUM_OPENPOSE
    assert names[1] == "neck" and names[4] == "r_wrist" and names[7] == "l_wrist"
    m = openpose137_mirror()
    np.testing.assert_array_equal(m[m], np.arange(NUM_OPENPOSE))  # an involution
    assert m[4] == 7 and m[95] == 116


@pytest.mark.parametrize(
    "name,v", [("imigue22", 22), ("mg36", 36), ("body_face41", 41), ("openpose137", 137)]
)
def test_builtin_layouts_are_valid_trees(name, v):
    layout = get_layout(name)
    check_layout(layout)
    assert layout.num_joints == v
    assert layout.names[layout.center] == "neck"
    f = layout.flip_index
    np.testing.assert_array_equal(f[f], np.arange(v))
    assert layout.parents[layout.center] == layout.center


def test_imigue22_joints():
    layout = get_layout("imigue22")
    names = layout.names
    assert names[:8] == (
        "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    )  # fmt: skip
    assert sum(n.endswith("_tip") for n in names) == 10
    f = layout.flip_index
    assert names[f[names.index("r_wrist")]] == "l_wrist"
    assert names[f[names.index("lhand_thumb_tip")]] == "rhand_thumb_tip"
    # fingertips hang from their wrist
    p = layout.parents
    assert names[p[names.index("lhand_index_tip")]] == "l_wrist"


def test_mg36_indices_match_design():
    expected = [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18, 27, 29, 33, 37, 39, 44, 49, 52, 73, 76]
    expected += [79, 82, 95, 99, 103, 107, 111, 115, 116, 120, 124, 128, 132, 136]
    assert sorted(get_layout("mg36").indices) == expected


def test_errors():
    with pytest.raises(KeyError, match="unknown joint layout"):
        get_layout("coco17")
    bad = JointLayout(name="bad", indices=(1, 2, 5), edges_op=((2, 1),))
    with pytest.raises(ValueError):
        check_layout(bad)
    no_mirror = JointLayout(name="no_mirror", indices=(1, 2), edges_op=((2, 1),))
    with pytest.raises(ValueError):
        check_layout(no_mirror)
    with pytest.raises(ValueError):
        get_layout("imigue22").index_of(8)
    assert "no_mirror" not in LAYOUTS


def _limb_set(layout):
    return {frozenset(ab) for ab in layout.limbs}


@pytest.mark.parametrize("name", ["imigue22", "mg36", "openpose137"])
def test_default_limbs_are_edges_and_mirror_closed(name):
    layout = get_layout(name)
    assert layout.limbs_op is None and layout.limbs == layout.edges
    f = layout.flip_index
    limbs = _limb_set(layout)
    assert all(frozenset((f[a], f[b])) in limbs for a, b in layout.limbs)


def test_body_face41_joints():
    layout = get_layout("body_face41")
    imigue = get_layout("imigue22")
    assert layout.num_joints == 41
    assert layout.indices[:22] == imigue.indices and layout.names[:22] == imigue.names
    face = [0, 4, 8, 12, 16, 17, 19, 21, 22, 24, 26, 30, 33, 48, 51, 54, 57, 62, 66]
    assert layout.indices[22:] == tuple(25 + k for k in face)
    assert layout.names[22:] == tuple(f"face{k}" for k in face)
    assert layout.names[layout.center] == "neck"
    check_layout(layout)
    # flipping: an involution swapping left/right names; midline face points stay
    f = layout.flip_index
    np.testing.assert_array_equal(f[f], np.arange(41))
    names = layout.names
    pairs = [("r_wrist", "l_wrist"), ("r_ear", "l_ear"), ("face0", "face16"), ("face4", "face12"),
             ("face17", "face26"), ("face19", "face24"), ("face21", "face22"),
             ("face48", "face54"), ("lhand_index_tip", "rhand_index_tip")]  # fmt: skip
    for a, b in pairs:
        assert names[f[names.index(a)]] == b and names[f[names.index(b)]] == a
    for k in (8, 30, 33, 51, 57, 62, 66):
        assert f[names.index(f"face{k}")] == names.index(f"face{k}")
    # the imigue22 part keeps its tree; the face hangs from the nose and the eyes
    assert layout.edges[:21] == imigue.edges
    p = layout.parents
    assert names[p[names.index("face30")]] == "nose"
    assert names[p[names.index("face19")]] == "r_eye"
    assert names[p[names.index("face24")]] == "l_eye"


def test_body_face41_limbs():
    layout = get_layout("body_face41")
    limbs = layout.limbs
    assert len(limbs) == 44 and len(_limb_set(layout)) == 44
    assert set(layout.edges) <= set(limbs)  # tree edges first, then contour closers
    assert limbs[: len(layout.edges)] == layout.edges
    names = layout.names
    closers = {frozenset(names.index(n) for n in pair) for pair in
               [("face48", "face57"), ("face54", "face57"), ("face0", "r_ear"),
                ("face16", "l_ear")]}  # fmt: skip
    assert closers <= _limb_set(layout)
    f = layout.flip_index
    assert all(frozenset((f[a], f[b])) in _limb_set(layout) for a, b in limbs)
    assert all(0 <= a < 41 and 0 <= b < 41 and a != b for a, b in limbs)


def test_limb_checks():
    # a limb whose mirror is missing
    lopsided = JointLayout(
        name="lopsided", indices=(1, 2, 5), edges_op=((2, 1), (5, 1)), limbs_op=((2, 1),)
    )
    assert lopsided.limbs == ((1, 0),)
    with pytest.raises(ValueError, match="mirror of limb"):
        check_layout(lopsided)
    # a limb through a joint the layout lacks
    outside = JointLayout(
        name="outside", indices=(1, 2, 5), edges_op=((2, 1), (5, 1)), limbs_op=((2, 3), (5, 6))
    )
    with pytest.raises(ValueError, match="no OpenPose joint 3"):
        check_layout(outside)
    degenerate = JointLayout(
        name="degenerate", indices=(1, 2, 5), edges_op=((2, 1), (5, 1)), limbs_op=((1, 1),)
    )
    with pytest.raises(ValueError, match="distinct"):
        check_layout(degenerate)
    closed = JointLayout(
        name="closed",
        indices=(1, 2, 5),
        edges_op=((2, 1), (5, 1)),
        limbs_op=((2, 1), (5, 1), (2, 5)),
    )
    check_layout(closed)
