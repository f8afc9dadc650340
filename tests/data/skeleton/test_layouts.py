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


@pytest.mark.parametrize("name,v", [("imigue22", 22), ("mg36", 36), ("openpose137", 137)])
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
