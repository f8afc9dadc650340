import numpy as np
import pytest

from migalab.data.skeleton.graph import Graph, edge2mat, normalize_digraph
from migalab.data.skeleton.layouts import JointLayout, get_layout

# neck (center) <- r_shoulder <- r_elbow : a 3-joint chain
CHAIN = JointLayout(name="toy_chain", indices=(1, 2, 3), edges_op=((2, 1), (3, 2)))
# neck (center) with two children: r_shoulder, l_shoulder
STAR = JointLayout(name="toy_star", indices=(1, 2, 5), edges_op=((2, 1), (5, 1)))


def test_chain_subsets():
    g = Graph(CHAIN)
    assert g.A.shape == (3, 3, 3) and g.A.dtype == np.float32
    assert g.num_nodes == 3 and g.center == 0
    assert g.edges == ((1, 0), (2, 1))
    np.testing.assert_array_equal(g.A[0], np.eye(3))
    # inward: A[1][parent, child] = 1 (the child receives from its parent under y = x @ A)
    inward = np.zeros((3, 3), np.float32)
    inward[0, 1] = inward[1, 2] = 1
    np.testing.assert_array_equal(g.A[1], inward)
    # outward: A[2][child, parent] = 1 / #children(parent)
    np.testing.assert_array_equal(g.A[2], inward.T)


def test_star_outward_is_column_normalised():
    g = Graph(STAR)
    np.testing.assert_allclose(g.A[2][:, 0], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(g.A[1][0, 1:], [1.0, 1.0])
    np.testing.assert_allclose(g.A[1].sum(0), [0.0, 1.0, 1.0])
    np.testing.assert_allclose(g.A[2].sum(0), [1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "name,v", [("imigue22", 22), ("mg36", 36), ("body_face41", 41), ("openpose137", 137)]
)
def test_real_layouts(name, v):
    g = Graph(name)
    assert g.A.shape == (3, v, v)
    assert g.num_nodes == v and g.center == get_layout(name).center
    np.testing.assert_array_equal(g.A[0], np.eye(v))
    non_center = np.arange(v) != g.center
    # every non-center joint has exactly one parent -> inward columns sum to 1, center column 0
    np.testing.assert_allclose(g.A[1].sum(0)[non_center], 1.0, atol=1e-6)
    assert g.A[1].sum(0)[g.center] == 0
    # outward columns sum to 1 for joints with children, else 0
    has_children = np.isin(np.arange(v), [p for _, p in g.edges])
    np.testing.assert_allclose(g.A[2].sum(0), has_children.astype(float), atol=1e-6)
    for c, p in g.edges:
        assert g.A[1][p, c] > 0 and g.A[2][c, p] > 0
    assert np.count_nonzero(g.A[1]) == np.count_nonzero(g.A[2]) == v - 1


def test_helpers_and_errors():
    a = edge2mat([(0, 1), (2, 1)], 3)
    assert a[1, 0] == 1 and a[1, 2] == 1 and a.sum() == 2
    np.testing.assert_allclose(normalize_digraph(np.ones((2, 2))), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="strategy"):
        Graph("imigue22", strategy="uniform")
    with pytest.raises(KeyError):
        Graph("nope")


def test_body_face41_graph():
    g = Graph("body_face41")
    layout = get_layout("body_face41")
    assert g.A.shape == (3, 41, 41) and g.center == 1
    # the imigue22 sub-block is the imigue22 graph's (face joints only hang off nose / eyes)
    sub = Graph("imigue22")
    np.testing.assert_array_equal(g.A[1][:22, :22], sub.A[1])
    names = layout.names
    nose, tip = names.index("nose"), names.index("face30")
    assert g.A[1][nose, tip] == 1.0  # the nose tip receives from the body nose
    # undirected adjacency is connected (a tree over all 41 joints)
    adj = (g.A[1] + g.A[2] + g.A[0]) > 0
    reach = np.zeros(41, bool)
    reach[g.center] = True
    for _ in range(41):
        reach = adj[reach].any(0) | reach
    assert reach.all()
