"""Skeleton graphs (adjacency matrices) for graph-convolutional encoders.

The "spatial" partition strategy follows Shi et al., 2s-AGCN (CVPR 2019), ``graph/ntu_rgb_d.py``
of the reference code: three subsets

* ``A[0]`` identity (self links),
* ``A[1]`` inward  links (child -> parent, i.e. toward the layout ``center``, the neck),
* ``A[2]`` outward links (parent -> child),

each directed subset column-normalised (``normalize_digraph``: every non-empty column divided by
its sum).

Convention (the reference's ``edge2mat``): ``A[k][i, j] = 1`` for a link from joint ``i`` to joint
``j``, and features are propagated as ``y = x @ A[k]`` over the joint axis, i.e.
``y[..., j] = sum_i x[..., i] * A[k][i, j]``: column ``j`` lists who node ``j`` receives from, and
column normalisation makes each node average over its senders. Concretely, for an edge
(child ``c``, parent ``p``):

* inward  ``A[1][p, c] = 1 / (#parents of c) = 1`` (every non-center joint has one parent), so the
  child receives the parent's features,
* outward ``A[2][c, p] = 1 / (#children of p)``, so the parent averages over its children.

Column sums are therefore 1 for every non-center column of ``A[1]``, 1 for every column of
``A[2]`` whose joint has children, and 0 elsewhere.
"""

from __future__ import annotations

import numpy as np

from migalab.data.skeleton.layouts import JointLayout, get_layout

__all__ = ["Graph", "edge2mat", "normalize_digraph"]


def edge2mat(links: list[tuple[int, int]] | np.ndarray, num_nodes: int) -> np.ndarray:
    """(V, V) float32 matrix with ``A[j, i] = 1`` for each link ``(i, j)`` (the reference's
    ``edge2mat``: a ``(child, parent)`` list gives ``A[parent, child] = 1``)."""
    a = np.zeros((num_nodes, num_nodes), dtype=np.float32)
    links = np.asarray(links, dtype=np.int64).reshape(-1, 2)
    a[links[:, 1], links[:, 0]] = 1.0
    return a


def normalize_digraph(a: np.ndarray) -> np.ndarray:
    """Column-normalise a (V, V) matrix: ``A @ D^-1`` with ``D = diag(column sums)``; empty
    columns stay 0."""
    col = a.sum(axis=0)
    inv = np.divide(1.0, col, out=np.zeros_like(col), where=col > 0)
    return (a * inv[None, :]).astype(np.float32)


class Graph:
    """The adjacency of a joint layout.

    Args:
        layout: a registered layout name (``imigue22``, ``mg36``, ``openpose137``) or a
            ``JointLayout``.
        strategy: only ``"spatial"`` (self / inward / outward, as in 2s-AGCN).

    Attributes:
        A: (3, V, V) float32 ``[identity, normalised inward, normalised outward]``.
        num_nodes: V.
        edges: ``(child, parent)`` pairs in layout indices (parents toward ``center``).
        center: layout index of the root joint (the neck for the built-in layouts).
        self_link, inward, outward: the link lists the subsets are built from.
    """

    def __init__(self, layout: str | JointLayout, strategy: str = "spatial") -> None:
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        self.strategy = strategy
        self.num_nodes: int = self.layout.num_joints
        self.edges: tuple[tuple[int, int], ...] = self.layout.edges
        self.center: int = self.layout.center
        self.self_link = [(i, i) for i in range(self.num_nodes)]
        self.inward = list(self.edges)
        self.outward = [(p, c) for c, p in self.edges]
        if strategy != "spatial":
            raise ValueError(f"unknown graph strategy {strategy!r}; known: ['spatial']")
        self.A: np.ndarray = np.stack(
            [
                edge2mat(self.self_link, self.num_nodes),
                normalize_digraph(edge2mat(self.inward, self.num_nodes)),
                normalize_digraph(edge2mat(self.outward, self.num_nodes)),
            ]
        ).astype(np.float32)

    @property
    def num_subsets(self) -> int:
        """K, the number of adjacency subsets (3 for ``spatial``)."""
        return int(self.A.shape[0])

    def __repr__(self) -> str:
        return (
            f"Graph(layout={self.layout.name!r}, strategy={self.strategy!r}, "
            f"num_nodes={self.num_nodes})"
        )
