"""Self-supervised pretext heads: modules that turn an encoder's input into a pretraining loss
without labels (:class:`migalab.tasks.pretrain.PretrainModule` trains them). Each takes the
encoder as an argument instead of owning it, so a pretraining checkpoint's ``encoder.*`` keys
initialise a fine-tuned encoder (``model.encoder.init=<ckpt>``) as they are.

* :class:`MaskedMotionPrediction` (MAMP) for the skeleton transformer.
"""

from migalab.models.pretrain.mamp import MaskedMotionPrediction, motion_aware_mask, motion_target

__all__ = ["MaskedMotionPrediction", "motion_aware_mask", "motion_target"]
