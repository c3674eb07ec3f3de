"""Embedding: paired T1/T2 volumes -> representations.

* :mod:`.contrastive` -- :class:`MomentumContrastiveEmbedder` (MoCo, cross-modal InfoNCE);
* :mod:`.autoencoder` -- :class:`AutoencoderEmbedder` (the UDIP baseline);
* :mod:`.reduction` -- :class:`ModalityPCA` (the reference protocol) and
  :class:`CrossModalCCA` (the linear cross-modal reference model);
* :mod:`.callbacks` -- skorch callbacks shared by the embedders;
* :mod:`.nn` -- the PyTorch modules (encoders, heads, losses, augmentation, runtime).
"""
