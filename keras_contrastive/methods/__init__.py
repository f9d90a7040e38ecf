"""Training methods: how `kc.ContrastiveModel` turns a batch into the loss's inputs.

Each method is one `kc.methods.Method` subclass in a file of its own, chosen
with `kc.ContrastiveModel(..., method=...)`; without one, the model picks
`DualEncoder` for two towers and, for one encoder, the method the loss's
contract asks for: `TwoView` (labels ignored), `Supervised` (integer labels)
or `Pairs` (similar flags).
"""

from keras_contrastive.methods.byol import BYOL
from keras_contrastive.methods.dino import DINO
from keras_contrastive.methods.dual_encoder import DualEncoder
from keras_contrastive.methods.method import Method, Prepared, Step
from keras_contrastive.methods.moco import MoCo
from keras_contrastive.methods.nnclr import NNCLR
from keras_contrastive.methods.pairs import Pairs
from keras_contrastive.methods.simsiam import SimSiam
from keras_contrastive.methods.supervised import Supervised
from keras_contrastive.methods.two_view import TwoView
