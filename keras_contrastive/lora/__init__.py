"""keras_contrastive.lora: LoRA fine-tuning of any Keras model, that reloads, merges and swaps.

- `enable_lora(model, rank, alpha=None, target_layers=None, train_bias=False)`:
  low-rank adapters on every Dense, EinsumDense, Embedding and Conv1D/2D/3D
  layer (nested ones, and those inside MultiHeadAttention, included);
  everything else frozen.
- `lora_spec(model)`: the adapter's rank, alpha, layers and train_bias, read
  from the layers (what `kc.ContrastiveModel` records in its config).
- `merge_lora(model)`: folds the adapters into the kernels.
- `save_lora_weights(model, path)` / `load_lora_weights(model, path)`: the
  factors alone, several adapters per base model.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
"""

from keras_contrastive.lora.enable_lora import enable_lora, lora_spec
from keras_contrastive.lora.lora_weights import load_lora_weights, save_lora_weights
from keras_contrastive.lora.merge_lora import merge_lora
