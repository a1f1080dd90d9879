"""What a synthesis matches: the descriptor (VGG taps), the statistics and losses on its features
(Gram matrices, sliced Wasserstein, colour, the spectrum constraint), the objectives built from them,
and the measures (metrics) that no objective uses."""

from texport.objectives.descriptor import Descriptor, build_descriptor
from texport.objectives.losses import (
                                       PO_LAYERS,
                                       PYRAMID_LAYERS,
                                       TEXNET_LAYERS,
                                       color_distance,
                                       gram,
                                       sliced_wasserstein_loss,
                                       texture_loss,
)
from texport.objectives.metrics import Judge, spectral_distance
from texport.objectives.objective import StyleObjective, TextureObjective, build_objective, build_style_objective, parse_loss
from texport.objectives.spectrum import spectrum_loss
