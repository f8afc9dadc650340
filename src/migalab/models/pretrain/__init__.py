"""Self-supervised pretext heads: modules that turn an encoder's input into a pretraining loss
without labels (:class:`migalab.tasks.pretrain.PretrainModule` trains them). Each takes the
encoder as an argument instead of owning it, so a pretraining checkpoint's ``encoder.*`` keys
initialise a fine-tuned encoder (``model.encoder.init=<ckpt>``) as they are.

* :class:`MaskedMotionPrediction` (MAMP) for the skeleton transformer;
* :class:`MaskedFeaturePrediction` (MaskFeat, HOG targets, tube masking) for the MViT video
  encoder;
* :class:`MaskedImageModeling` (SimMIM) for the Swin backbone of the face encoder.
"""

from migalab.models.pretrain.mamp import MaskedMotionPrediction, motion_aware_mask, motion_target
from migalab.models.pretrain.maskfeat import HOG, MaskedFeaturePrediction, tube_mask
from migalab.models.pretrain.simmim import MaskedImageModeling, random_square_mask

__all__ = [
    "HOG",
    "MaskedFeaturePrediction",
    "MaskedImageModeling",
    "MaskedMotionPrediction",
    "motion_aware_mask",
    "motion_target",
    "random_square_mask",
    "tube_mask",
]
