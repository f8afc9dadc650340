"""Named joint layouts as index maps into the 137 OpenPose keypoints.

OpenPose-137 = BODY_25 (0-24) + face 70 (25-94: 68 landmarks + 2 pupils) + left hand 21 (95-115)
+ right hand 21 (116-136). A layout selects V of those points, names them, lists its graph edges
(for GCN adjacency and bone vectors), its limbs (the segments drawn as PoseC3D limb heatmaps;
the graph edges unless given) and its left/right flip pairs (derived from the OpenPose mirror
map; ``check_layout`` verifies that every joint's mirror and every limb's mirror are present).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

NUM_OPENPOSE = 137
BODY_OFFSET, FACE_OFFSET, LHAND_OFFSET, RHAND_OFFSET = 0, 25, 95, 116

BODY25_NAMES = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "mid_hip",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
    "l_big_toe",
    "l_small_toe",
    "l_heel",
    "r_big_toe",
    "r_small_toe",
    "r_heel",
)
HAND_NAMES = (
    "wrist",
    "thumb1",
    "thumb2",
    "thumb3",
    "thumb_tip",
    "index1",
    "index2",
    "index3",
    "index_tip",
    "middle1",
    "middle2",
    "middle3",
    "middle_tip",
    "ring1",
    "ring2",
    "ring3",
    "ring_tip",
    "pinky1",
    "pinky2",
    "pinky3",
    "pinky_tip",
)
FINGERTIPS = (4, 8, 12, 16, 20)


def openpose137_names() -> tuple[str, ...]:
    """Names of the 137 OpenPose keypoints in index order."""
    face = tuple(f"face{i}" for i in range(68)) + ("r_pupil", "l_pupil")
    lhand = tuple(f"lhand_{n}" for n in HAND_NAMES)
    rhand = tuple(f"rhand_{n}" for n in HAND_NAMES)
    return BODY25_NAMES + face + lhand + rhand


@cache
def openpose137_mirror() -> np.ndarray:
    """(137,) int array: index of the left/right mirror of each OpenPose keypoint."""
    m = np.arange(NUM_OPENPOSE)

    def swap(a: int, b: int) -> None:
        m[a], m[b] = b, a

    for a, b in [(2, 5), (3, 6), (4, 7), (9, 12), (10, 13), (11, 14), (15, 16), (17, 18),
                 (19, 22), (20, 23), (21, 24)]:  # fmt: skip
        swap(a, b)
    face_pairs = [(i, 16 - i) for i in range(8)]  # jaw
    face_pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
    face_pairs += [(31, 35), (32, 34)]  # nostrils
    face_pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    face_pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
    face_pairs += [(60, 64), (61, 63), (65, 67), (68, 69)]  # inner lip, pupils
    for a, b in face_pairs:
        swap(FACE_OFFSET + a, FACE_OFFSET + b)
    for h in range(21):
        swap(LHAND_OFFSET + h, RHAND_OFFSET + h)
    return m


@dataclass(frozen=True)
class JointLayout:
    """A named subset of OpenPose-137 with its graph.

    Attributes:
        name: registry key.
        indices: OpenPose-137 index of each of the V joints.
        edges_op: graph edges as (child, parent) pairs of OpenPose indices; parents point toward
            ``center_op`` so that bones (child - parent) are well defined.
        center_op: OpenPose index of the root joint (used for normalisation and bones).
        limbs_op: limb segments (unordered OpenPose index pairs) rendered by the PoseC3D limb
            stream; ``None`` means the graph edges. Need not form a tree (may close contours)
            but must be closed under mirroring so flipped limb heatmaps stay consistent.
    """

    name: str
    indices: tuple[int, ...]
    edges_op: tuple[tuple[int, int], ...]
    center_op: int = 1
    limbs_op: tuple[tuple[int, int], ...] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.indices)

    @property
    def names(self) -> tuple[str, ...]:
        allnames = openpose137_names()
        return tuple(allnames[i] for i in self.indices)

    def index_of(self, op_index: int) -> int:
        """Layout position of an OpenPose keypoint (ValueError if the layout lacks it)."""
        try:
            return self.indices.index(op_index)
        except ValueError:
            raise ValueError(f"layout {self.name} has no OpenPose joint {op_index}") from None

    @property
    def center(self) -> int:
        return self.index_of(self.center_op)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(child, parent) pairs in layout indices."""
        return tuple((self.index_of(c), self.index_of(p)) for c, p in self.edges_op)

    @property
    def limbs(self) -> tuple[tuple[int, int], ...]:
        """Limb segments as pairs of layout indices (``limbs_op`` mapped, else ``edges``)."""
        if self.limbs_op is None:
            return self.edges
        return tuple((self.index_of(a), self.index_of(b)) for a, b in self.limbs_op)

    @property
    def flip_index(self) -> np.ndarray:
        """(V,) permutation taking each joint to its left/right mirror."""
        mirror = openpose137_mirror()
        return np.array([self.index_of(int(mirror[i])) for i in self.indices], dtype=np.int64)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Unordered (left, right) pairs of layout indices that swap under flipping."""
        f = self.flip_index
        return tuple((i, int(f[i])) for i in range(len(f)) if f[i] > i)

    @property
    def parents(self) -> np.ndarray:
        """(V,) parent of each joint in the tree (the center is its own parent)."""
        p = np.arange(self.num_joints)
        for c, par in self.edges:
            p[c] = par
        return p


def _hand_edges(offset: int, wrist_op: int, full: bool) -> list[tuple[int, int]]:
    """Edges of a hand: fingertips (or full finger chains) to the hand root ``wrist_op``."""
    if not full:
        return [(offset + t, wrist_op) for t in FINGERTIPS]
    edges = [(offset, wrist_op)] if offset != wrist_op else []
    for f in range(5):
        chain = [offset] + [offset + 1 + 4 * f + k for k in range(4)]
        edges += [(chain[k + 1], chain[k]) for k in range(4)]
    return edges


_UPPER_BODY_EDGES = [(0, 1), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6),
                     (15, 0), (16, 0), (17, 15), (18, 16)]  # fmt: skip

IMIGUE22 = JointLayout(
    name="imigue22",
    indices=(0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18)
    + tuple(LHAND_OFFSET + t for t in FINGERTIPS)
    + tuple(RHAND_OFFSET + t for t in FINGERTIPS),
    edges_op=tuple(
        _UPPER_BODY_EDGES
        + [(LHAND_OFFSET + t, 7) for t in FINGERTIPS]
        + [(RHAND_OFFSET + t, 4) for t in FINGERTIPS]
    ),
)

# 2025 MiGA winner's 36 joints: upper body, 12 face points (jaw, brows, nose bridge, mouth),
# hand roots and fingertips.
_MG36_FACE = (27, 29, 33, 37, 39, 44, 49, 52, 73, 76, 79, 82)
MG36 = JointLayout(
    name="mg36",
    indices=(0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18)
    + _MG36_FACE
    + (95, 99, 103, 107, 111, 115, 116, 120, 124, 128, 132, 136),
    edges_op=tuple(
        _UPPER_BODY_EDGES
        # face: nose bridge hangs from the nose; jaw and brows from the bridge / chin; mouth ring
        + [(52, 0), (44, 52), (49, 52), (33, 0), (29, 33), (27, 29), (37, 33), (39, 37)]
        + [(76, 0), (73, 76), (79, 76), (82, 76)]
        + [(95, 7)]
        + _hand_edges(LHAND_OFFSET, 95, full=False)
        + [(116, 4)]
        + _hand_edges(RHAND_OFFSET, 116, full=False)
    ),
)

# ---- body_face41: the 22 iMiGUE joints + 19 of the 68 iBUG face landmarks (System A's
# topology-aware skeleton; face-region micro-gestures such as lip biting or face touching).
# iBUG numbering k (OpenPose index 25 + k); 0-8 / 17-21 / 36-41 are the subject's RIGHT side
# (image left), matching OpenPose r_eye 15 / r_ear 17.
#   jaw 0, 4, 8 (chin), 12, 16 | brows 17, 19, 21 (right) 22, 24, 26 (left) | nose 30 (tip),
#   33 (base) | outer lips 48 (r corner), 51 (upper), 54 (l corner), 57 (lower) | inner 62, 66.
# Tree (child <- parent), rooted at the neck through the body nose, mirror-symmetric:
#   nose tip 30 <- nose 0; 33 <- 30; upper lip 51 <- 33; corners 48, 54 <- 51; inner upper
#   62 <- 51; inner lower 66 <- 62; lower lip 57 <- 66; chin 8 <- 57; jaw 4 <- 8, 0 <- 4,
#   12 <- 8, 16 <- 12; right brow 19 <- r_eye, 17 <- 19, 21 <- 19; left brow 24 <- l_eye,
#   22 <- 24, 26 <- 24.
# Limbs (PoseC3D limb stream) = the tree edges + contour-closing segments that matter for face
# gestures: the outer lip ring (48-57, 54-57) and the jaw ends to the ears (jaw 0 - r_ear,
# jaw 16 - l_ear), so the face outline is closed. Mirror-closed (checked by check_layout).
FACE41_LANDMARKS = (0, 4, 8, 12, 16, 17, 19, 21, 22, 24, 26, 30, 33, 48, 51, 54, 57, 62, 66)


def _f(k: int) -> int:
    """OpenPose index of iBUG face landmark ``k``."""
    return FACE_OFFSET + k


_FACE41_EDGES = (
    [(_f(30), 0), (_f(33), _f(30)), (_f(51), _f(33)), (_f(48), _f(51)), (_f(54), _f(51)),
     (_f(62), _f(51)), (_f(66), _f(62)), (_f(57), _f(66)), (_f(8), _f(57)),
     (_f(4), _f(8)), (_f(0), _f(4)), (_f(12), _f(8)), (_f(16), _f(12)),
     (_f(19), 15), (_f(17), _f(19)), (_f(21), _f(19)),
     (_f(24), 16), (_f(22), _f(24)), (_f(26), _f(24))]
)  # fmt: skip
BODY_FACE41 = JointLayout(
    name="body_face41",
    indices=IMIGUE22.indices + tuple(_f(k) for k in FACE41_LANDMARKS),
    edges_op=IMIGUE22.edges_op + tuple(_FACE41_EDGES),
    limbs_op=IMIGUE22.edges_op
    + tuple(_FACE41_EDGES)
    + ((_f(48), _f(57)), (_f(54), _f(57)), (_f(0), 17), (_f(16), 18)),
)

OPENPOSE137 = JointLayout(
    name="openpose137",
    indices=tuple(range(NUM_OPENPOSE)),
    edges_op=tuple(
        [(0, 1), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6), (8, 1), (9, 8), (10, 9),
         (11, 10), (12, 8), (13, 12), (14, 13), (15, 0), (16, 0), (17, 15), (18, 16),
         (19, 14), (20, 19), (21, 14), (22, 11), (23, 22), (24, 11)]
        + [(FACE_OFFSET + i, 0) for i in range(70)]
        + [(LHAND_OFFSET, 7)] + _hand_edges(LHAND_OFFSET, LHAND_OFFSET, full=True)
        + [(RHAND_OFFSET, 4)] + _hand_edges(RHAND_OFFSET, RHAND_OFFSET, full=True)
    ),
)  # fmt: skip

# ---- light35: the 35 joints of the MiGA 2024-2026 tables (BODY_25 + 5 fingertips per hand),
# fingertips hanging from their wrists; the limbs (PoseC3D limb stream) are the tree edges.
LIGHT35 = JointLayout(
    name="light35",
    indices=tuple(range(25))
    + tuple(RHAND_OFFSET + t for t in FINGERTIPS)
    + tuple(LHAND_OFFSET + t for t in FINGERTIPS),
    edges_op=tuple(
        OPENPOSE137.edges_op[:24]
        + tuple((RHAND_OFFSET + t, 4) for t in FINGERTIPS)
        + tuple((LHAND_OFFSET + t, 7) for t in FINGERTIPS)
    ),
)

LAYOUTS: dict[str, JointLayout] = {
    layout.name: layout for layout in (IMIGUE22, MG36, BODY_FACE41, OPENPOSE137, LIGHT35)
}


def get_layout(name: str) -> JointLayout:
    """Look up a layout by name (``imigue22``, ``mg36``, ``body_face41``, ``openpose137``,
    ``light35``)."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(f"unknown joint layout {name!r}; known: {sorted(LAYOUTS)}") from None


def register_layout(layout: JointLayout) -> JointLayout:
    """Add a layout to the registry (checks it is a valid tree closed under flipping)."""
    check_layout(layout)
    LAYOUTS[layout.name] = layout
    return layout


def check_layout(layout: JointLayout) -> None:
    """Raise ValueError unless every joint but the center has exactly one parent and the edges
    form a tree rooted at the center, the layout is closed under flipping, and its limbs join
    two distinct layout joints, without repeats, and are closed under flipping (the mirror of
    every limb is a limb)."""
    v = layout.num_joints
    if len(set(layout.indices)) != v:
        raise ValueError(f"layout {layout.name}: repeated joints")
    children = [c for c, _ in layout.edges]
    if len(children) != v - 1 or len(set(children)) != v - 1 or layout.center in children:
        raise ValueError(f"layout {layout.name}: edges must give each non-center joint one parent")
    parents = layout.parents
    for j in range(v):
        seen, k = 0, j
        while k != layout.center:
            k = int(parents[k])
            seen += 1
            if seen > v:
                raise ValueError(f"layout {layout.name}: joint {j} does not reach the center")
    flip = layout.flip_index  # raises if a mirror joint is missing
    limbs = layout.limbs  # raises if a limb joint is missing
    pairs = {frozenset(map(int, ab)) for ab in limbs}
    if any(a == b for a, b in limbs) or len(pairs) != len(limbs):
        raise ValueError(f"layout {layout.name}: limbs must be distinct pairs of distinct joints")
    for a, b in limbs:
        if frozenset((int(flip[a]), int(flip[b]))) not in pairs:
            names = layout.names
            raise ValueError(
                f"layout {layout.name}: the mirror of limb ({names[a]}, {names[b]}) is not a limb"
            )
