"""Dataset specs: one :class:`DatasetSpec` per release format, chosen with ``data.dataset=<name>``.

Built in: ``miga2025`` (per-video 137-point tables), ``miga_light35`` (the MiGA 2024-26 35-joint
``_light_hand.csv`` tables), ``miga2023_npy`` (``<split>_data.npy`` + ``<split>_label.pkl``),
``pyskl`` (a pyskl annotation pickle) and ``synthetic`` (the generated stand-in of
:mod:`migalab.synthetic`). Everything that needs class names, the class count, split names,
the reader or the submission label map asks the spec.

A dataset of your own is one module holding a ``DatasetSpec`` and one ``conf/data/<name>.yaml``
with ``dataset: your.module:SPEC`` (see docs/data.md, "Adding a dataset").
"""

from migalab.data.specs.base import BUILTIN_DATASETS, DatasetSpec, get_dataset

__all__ = ["BUILTIN_DATASETS", "DatasetSpec", "get_dataset"]
