"""Momentum-contrastive embedding of paired T1/T2 volumes as a scikit-learn transformer.

:class:`MomentumContrastiveEmbedder` learns one representation space for the T1 and
the T2 image of each subject with momentum contrast (MoCo): the T1 and T2 images of
one subject are the positive pair, keys of other subjects held in a queue are the
negatives (Xia et al., 2026; docs/embedder.md). Training runs in
:class:`MoCoNet`, a :class:`skorch.NeuralNet` whose ``train_step``, ``get_loss``,
``validation_step`` and ``infer`` carry the method; the torch model is
:class:`hcl_sklearn.embed.nn.moco.MomentumContrast`.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import os
import tempfile
import warnings

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import (
    Callback,
    EpochTimer,
    LRScheduler,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)
from skorch.dataset import unpack_data
from skorch.helper import predefined_split
from skorch.utils import to_tensor
from torch.utils.data import Subset

from .nn.distributed import (ShardedEpochSampler, all_gather_cat, average_gradients,
                             in_torchrun, setup_from_env, world)
from .callbacks import (EpochCheckpoint, LinearWarmup, MomentumSchedule,
                        NonFiniteLossGuard, RestoreBestValidLoss, ValidationAlignment)
from .nn.augment import IntensityAugmentation
from .nn.moco import MomentumContrast, SymmetricInfoNCE
from .nn.runtime import (
    autocast_context,
    AmpTrainStep,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from .nn.vit import check_patch_size
from .base import IndexedPairs, PairedVolumeEmbedder

logger = logging.getLogger(__name__)

__all__ = ["REFERENCE_PARAMS", "ConfigurationWarning", "MoCoNet", "MomentumContrastiveEmbedder",
           "effective_queue_size"]

class ConfigurationWarning(UserWarning):
    """The configuration cannot learn well at the data's scale (the message says why and
    which parameters to change)."""


#: The reference implementation's settings, see :meth:`MomentumContrastiveEmbedder.reference`.
REFERENCE_PARAMS = {
    "encoder": "vit", "patch_size": (14, 16, 14), "embed_dim": 384, "depth": 12,
    "n_heads": 6, "cnn_widths": (16, 32, 64), "pooling": "mean", "proj_dim": 256,
    "proj_hidden_dim": None, "projector_batchnorm": "shared", "shared_encoder": True,
    "momentum": 0.999, "momentum_schedule": "constant", "queue_size": 65536,
    "temperature": 0.07, "queue_modalities": "t2", "augment": "none", "lr": 1e-4,
    "weight_decay": 0.01,
    "lr_schedule": "cosine_warm_restarts", "warmup_epochs": 0, "max_epochs": 100,
    "batch_size": 4, "validation_fraction": 0.1,
}

#: CosineAnnealingWarmRestarts settings of the reference, stepped once per epoch.
COSINE_WARM_RESTARTS = {"T_0": 10, "T_mult": 2, "eta_min": 1e-6}


def effective_queue_size(queue_size, n_train, batch_size):
    """Queue length actually used: ``queue_size`` clipped to what the data allows.

    A queue longer than the number of *other* training subjects necessarily holds
    several (stale) keys of the same subjects, including those of the current batch
    (which the loss leaves out as false negatives, wasting the slots). The queue is
    therefore clipped to the largest multiple of the batch size that is
    at most ``n_train - batch_size``, and never below one batch::

        K = min(queue_size, max(b, b * floor((n_train - b) / b)))

    Examples
    --------
    >>> from hcl_sklearn.embed.contrastive import effective_queue_size
    >>> effective_queue_size(65536, n_train=40_000, batch_size=4)
    39996
    >>> effective_queue_size(65536, n_train=10, batch_size=4)
    4
    >>> effective_queue_size(16, n_train=1000, batch_size=4)
    16
    """
    b = max(1, min(int(batch_size), int(n_train)))
    cap = max(b, b * ((int(n_train) - b) // b))
    return int(min(int(queue_size), cap))


# --------------------------------------------------------------------------- skorch net
class MoCoNet(AmpTrainStep, NeuralNet):
    """skorch ``NeuralNet`` running paired T1/T2 momentum contrast.

    The hooks carry the method:

    * ``train_step_single``: queries of T1 and T2, EMA update of the key encoder and
      projector, then keys (:meth:`MomentumContrast.forward_train`); the symmetric
      InfoNCE with queue negatives, each subject's own stale queued keys left out
      (``get_loss``; the batch's subject indices come as ``y``); backward; enqueue the keys
      with their subject indices;
    * ``validation_step``: the in-batch symmetric InfoNCE of the query projections
      (the reference's validation loss); ``y_pred`` are the projections, which
      :class:`~hcl_sklearn.embed.callbacks.ValidationAlignment` turns into retrieval/CKA;
    * ``infer``: query embeddings in the form named by ``output``.

    Every ``module__*``, ``criterion__*``, ``optimizer__*`` and ``iterator_*__*``
    parameter is routed as in any skorch net, so ``set_params`` and grid searches can
    tune them.

    Parameters
    ----------
    module : type, default=MomentumContrast
    criterion : type, default=SymmetricInfoNCE
    precision : {'auto', 'fp32', 'bf16', 'fp16'}, default='auto'
        Autocast precision of forward passes, see :mod:`hcl_sklearn.embed.nn.runtime`.
    output : {'pooled', 'projection', 'tokens'}, default='projection'
        What ``infer``/``forward`` return.
    augmentation : callable or None, default=None
        Applied to each training batch ``(B, 2, D, H, W)`` before the forward pass
        (e.g. :class:`~hcl_sklearn.embed.nn.augment.IntensityAugmentation`); never to
        validation or inference.
    **kwargs
        Any :class:`skorch.NeuralNet` parameter.
    """

    def __init__(self, module=MomentumContrast, *args, criterion=SymmetricInfoNCE,
                 precision="auto", output="projection", augmentation=None, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)
        self.precision = precision
        self.output = output
        self.augmentation = augmentation

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("nonfinite_guard", NonFiniteLossGuard()),
            ("valid_alignment", ValidationAlignment()),
            ("print_log", PrintLog(sink=logger.info)),
        ]

    def get_all_learnable_params(self):
        # the key encoder/projector are EMA copies, never optimised
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param

    def _autocast(self):
        return autocast_context(self.device, self.precision)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        x = to_tensor(Xi, device=self.device)
        ids = None if yi is None else to_tensor(yi, device=self.device).long()
        if self.augmentation is not None:
            x = self.augmentation(x)
        with self._autocast():
            q1, q2, k1, k2 = self.module_.forward_train(x)
            loss = self.get_loss((q1, q2, k1, k2), ids, X=Xi, training=True)
        self._backward(loss)
        loss = loss.detach()
        if world()[1] > 1:  # data-parallel: DDP's all-reduce, the keys of every rank
            average_gradients(p for _, p in self.get_all_learnable_params())
            k1, k2 = all_gather_cat(k1), all_gather_cat(k2)
            ids = None if ids is None else all_gather_cat(ids)
            loss = all_gather_cat(loss.reshape(1)).mean()   # the global batch's loss
        self.module_.enqueue(k1, k2, ids)  # after backward: the loss used the old queue
        return {"loss": loss, "y_pred": torch.stack([q1, q2], dim=1).detach()}

    def get_loss(self, y_pred, y_true=None, X=None, training=False):
        """Training: symmetric InfoNCE with queue negatives (``y_true``: the batch's
        subject indices, whose own queued keys are left out); validation: in-batch."""
        if training:
            q1, q2, k1, k2 = y_pred
            neg_t1_query, neg_t2_query = self.module_.negatives()
            exclude = None if y_true is None else self.module_.false_negatives(y_true)
            return self.criterion_(q1, q2, k1, k2, neg_t1_query, neg_t2_query, exclude)
        return self.criterion_.in_batch(y_pred[:, 0], y_pred[:, 1])

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, _ = unpack_data(batch)
        with torch.no_grad(), self._autocast():
            z = self.module_(to_tensor(Xi, device=self.device), output="projection")
            loss = self.get_loss(z, None, X=Xi, training=False)
        return {"loss": loss, "y_pred": z.float()}

    def infer(self, x, **fit_params):
        x = to_tensor(x, device=self.device)
        with self._autocast():
            return self.module_(x, output=self.output, **fit_params).float()


class _SamplerEpoch(Callback):
    """Tell the sharded sampler which epoch starts (every rank draws the same order)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def on_epoch_begin(self, net, **kwargs):
        self.sampler.set_epoch(len(net.history))


# --------------------------------------------------------------------------- estimator
class MomentumContrastiveEmbedder(PairedVolumeEmbedder):
    """Paired T1/T2 momentum-contrastive embedder (MoCo) as a scikit-learn transformer.

    Learns a shared encoder for T1 and T2 volumes so that a subject's T1 and T2
    embeddings agree and differ from other subjects' (symmetric cross-modal InfoNCE
    with a queue of momentum-encoded keys), then embeds each modality separately.

    The defaults are a recipe that learns from a few hundred subjects on a CPU: a small
    3-D CNN whose full token grid feeds the projection head, per-modality intensity
    augmentation, a fast-moving key encoder (momentum 0.9), lr 1e-3, batches of 16
    (docs/embedder.md has the ablation behind each choice). The reference
    implementation's configuration (3-D ViT at 1 mm, mean-pooled tokens, lr 1e-4,
    momentum 0.999, tau 0.07, batches of 4) is one call away:
    :meth:`MomentumContrastiveEmbedder.reference`.

    Parameters
    ----------
    encoder : {'vit', 'cnn'}, default='cnn'
        ``'vit'``: the reference 3-D ViT (patch embedding ``Conv3d`` with kernel =
        stride = ``patch_size``, fixed 3-D sin-cos positions, ``depth`` pre-norm blocks,
        no CLS token, mean-pooled tokens). Volumes not divisible by ``patch_size`` are
        zero-padded at the end of each axis; a patch larger than the volume is an error.
        ``'cnn'``: a small 3-D CNN (stages of ``cnn_widths`` channels, each halving the
        grid) for CPU-sized configurations; ``patch_size``, ``depth`` and ``n_heads``
        are then unused.
    patch_size : tuple of 3 int, default=(14, 16, 14)
    embed_dim : int, default=24
        Width of the encoder tokens (ViT dimension or CNN output channels; the
        reference ViT: 384).
    depth : int, default=12
    n_heads : int, default=6
    cnn_widths : tuple of int, default=(8, 16)
    pooling : 'grid', 'mean' or tuple of 3 int, default='grid'
        How each volume's token grid becomes one vector (input of the projection head
        and ``output='pooled'``): ``'grid'`` keeps the token grid (average-pooled to at
        most 8 cells per axis) and concatenates its cells, so the spatial layout of the
        anatomy reaches the objective; ``'mean'`` averages the tokens (reference); a
        grid such as ``(2, 2, 2)`` average-pools the token grid to that grid
        (``embed_dim * prod(grid)`` features). On the simulated cohort mean pooling
        learns nothing held out (docs/embedder.md).
    proj_dim : int, default=32
        Output of the projection head ``Linear-BatchNorm-ReLU-Linear``. Its BatchNorm
        uses running statistics on batches of fewer than 3 subjects.
    proj_hidden_dim : int or None, default=256
        Width of the projection head's hidden layer; None: its input width (reference:
        384). With a flattened token grid as ``pooling`` the input is wide and a
        narrower hidden layer trains several times faster.
    projector_batchnorm : {'shared', 'per_modality'}, default='per_modality'
        In training, T1 and T2 are projected in two calls, so each modality's
        BatchNorm statistics come from its own batch (reference). ``'shared'``: one
        BatchNorm, whose eval-mode running statistics mix both modalities
        (reference). ``'per_modality'``: T2 gets its own BatchNorm, so eval mode
        normalises each modality as training did; on the simulated cohort this
        roughly doubles held-out retrieval (docs/embedder.md).
    shared_encoder : bool, default=True
        One encoder for both modalities (reference); ``False``: one per modality.
    momentum : float, default=0.9
        EMA coefficient of the key encoder and projector, updated once per step
        before the keys are computed (reference: 0.999, made for ~10^6 steps; ``fit``
        warns when the key encoder would keep > 5% of its random initial weights).
    momentum_schedule : {'constant', 'cosine'}, default='constant'
        ``'cosine'``: the momentum rises from ``momentum`` to 1 along a half cosine over
        the fit's steps (BYOL, MoCo v3), see
        :class:`~hcl_sklearn.embed.callbacks.MomentumSchedule`.
    queue_size : int or None, default=65536
        Requested number of negative keys (``None``: the longest queue the training
        subjects fill, one key per other subject, without a warning). Clipped to
        ``min(queue_size, max(b, b * floor((n_train - b) / b)))`` with ``b`` the batch
        size, so the queue never needs to hold more keys than there are other
        training subjects (see :func:`effective_queue_size`); the value used is
        ``queue_size_``.
    temperature : float, default=0.1
        InfoNCE temperature (reference: 0.07).
    queue_modalities : {'t2', 'both'}, default='both'
        ``'t2'`` enqueues only T2 keys (reference); ``'both'`` keeps a T1 queue too and
        draws each direction's negatives from the modality of its positive.
    augment : {'intensity', 'none'} or callable, default='intensity'
        Training-time augmentation of each batch. ``'intensity'``: random gain, offset,
        log-linear bias field and noise drawn independently for T1 and T2 (no spatial
        transform), see :class:`~hcl_sklearn.embed.nn.augment.IntensityAugmentation`; a
        callable takes and returns a ``(B, 2, D, H, W)`` tensor. The reference uses
        none.
    lr : float, default=1e-3
        AdamW learning rate (reference: 1e-4).
    weight_decay : float, default=0.01
    lr_schedule : {'cosine_warm_restarts', 'constant'}, default='cosine_warm_restarts'
        ``CosineAnnealingWarmRestarts(T_0=10, T_mult=2, eta_min=1e-6)`` stepped per epoch
        (reference), or a constant rate.
    warmup_epochs : float, default=0
        Linear learning-rate warm-up over this many epochs' steps, on top of
        ``lr_schedule`` (MoCo v3), see :class:`~hcl_sklearn.embed.callbacks.LinearWarmup`.
        0 (reference): none.
    max_epochs : int, default=100
    batch_size : int, default=16
        Subjects per step (reference: 4 per GPU).
    validation_fraction : float in (0, 1) or None, default=0.1
        Fraction of subjects held out (at random, by ``random_state``) to compute the
        validation loss (in-batch InfoNCE) and alignment metrics each epoch; the
        weights of the epoch with the lowest validation loss are kept. ``None`` trains
        on all subjects and keeps the last epoch. At least 2 subjects must be held out.
    output : {'pooled', 'projection', 'tokens'}, default='pooled'
        What :meth:`transform` returns per modality: pooled tokens
        (``embed_dim``, times ``prod(pooling)`` for a grid), the L2-normalised projection (``proj_dim``) or every token
        (``n_tokens * embed_dim``, written to a memory map in ``temp_folder``; the
        reference's input to its per-modality PCA). May be changed after fitting.
    target_shape : 'auto', tuple of 3 int or None, default='auto'
        Grid volumes are padded/cropped to: ``'auto'`` keeps the grid of array input
        and uses the reference 182 x 224 x 182 for NIfTI paths.
    downsample : int, default=1
        Integer average-pooling factor applied to every volume (e.g. 4 on a CPU).
    cache_dir : str or None, default=None
        Cache of preprocessed NIfTI volumes, see :class:`~hcl_sklearn.PairedVolumes`.
    temp_folder : str or None, default=None
        Folder of the token memory map (``output='tokens'``); the system temporary
        folder when None.
    device : str, default='auto'
        ``'auto'`` uses CUDA when available, else the CPU.
    precision : {'auto', 'fp32', 'bf16', 'fp16'}, default='auto'
        Autocast precision; ``'auto'`` is bf16 (or fp16) on a GPU and fp32 on the CPU.
    num_workers : int, default=0
        DataLoader worker processes.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, weight initialisation, queue and shuffling. With
        an int, fitting on the CPU is reproducible.
    verbose : int, default=0
        0: silent; >= 1: a tqdm progress bar per epoch and the epoch table through
        ``logging`` (logger ``hcl_sklearn.embed.contrastive``).
    callbacks : list of skorch callbacks or (name, callback) tuples, default=None
        Extra callbacks (e.g. ``skorch.callbacks.Checkpoint``/``LoadInitState`` to save
        and resume). They are copied at ``fit``; the fitted ones are in
        ``net_.callbacks_``.
    checkpoint_dir : str or path-like, default=None
        Save the whole training state at the end of every epoch (module with the EMA
        key encoder and the queue, optimizer, LR scheduler, history, best-epoch state,
        RNG states; :class:`~hcl_sklearn.embed.callbacks.EpochCheckpoint`). A ``fit``
        finding a checkpoint there continues after its last complete epoch, so a run
        killed mid-epoch and started again ends with the same weights as an
        uninterrupted run (same device and threads; ``resumed_from_epoch_`` says where
        it picked up). A checkpoint of another configuration or other training
        subjects is refused. ``max_epochs`` may be raised to train further.

    Attributes
    ----------
    net_ : MoCoNet
        The trained skorch net (``net_.module_`` is the torch model,
        ``net_.history`` the per-epoch log).
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss``, ``valid_top1``, ``valid_recall@k``,
        ``valid_median_rank``, ``valid_cka``, ``dur``.
    volume_shape_ : tuple of int
        Spatial shape of the preprocessed volumes seen in fit.
    queue_size_ : int
        Queue length used.
    n_train_subjects_ : int
    validation_ids_ : pandas.Index
        Subjects held out for validation (empty without a validation split).
    best_epoch_ : int or None
        Epoch whose weights were kept (None without validation).
    device_ : torch.device

    See Also
    --------
    hcl_sklearn.ModalityPCA : the reference's per-modality StandardScaler + PCA.
    hcl_sklearn.AutoencoderEmbedder : the single-modality autoencoder baseline.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn import MomentumContrastiveEmbedder
    >>> X = np.random.default_rng(0).random((12, 2, 16, 16, 16), dtype=np.float32)
    >>> emb = MomentumContrastiveEmbedder(max_epochs=2, batch_size=4, momentum=0.5,
    ...                                   queue_size=4, validation_fraction=0.25,
    ...                                   random_state=0).fit(X)
    >>> Z = emb.set_params(output="projection").transform(X)
    >>> Z.shape
    (12, 64)
    >>> emb.get_feature_names_out()[[0, 32]]
    array(['t1_000', 't2_000'], dtype=object)
    """

    @classmethod
    def reference(cls, **params):
        """The reference implementation's configuration (Xia et al., 2026), ``params``
        overriding it: the 3-D ViT (patch 14 x 16 x 14 at 1 mm, dim 384, depth 12, 6
        heads) with mean-pooled tokens, projection 384 -> 384 -> 256 with one shared
        BatchNorm, momentum 0.999, a 65,536-key queue of T2 keys, tau 0.07, no
        augmentation, AdamW lr 1e-4 (weight decay 0.01) with cosine warm restarts,
        batches of 4, 100 epochs, 10% held out for the validation loss.

        Parameters
        ----------
        **params
            Any constructor parameter, e.g. ``device='cuda'`` or ``max_epochs=300``.

        Returns
        -------
        MomentumContrastiveEmbedder

        Examples
        --------
        >>> from hcl_sklearn import MomentumContrastiveEmbedder
        >>> emb = MomentumContrastiveEmbedder.reference(max_epochs=300)
        >>> emb.encoder, emb.embed_dim, emb.momentum, emb.max_epochs
        ('vit', 384, 0.999, 300)
        """
        return cls(**{**REFERENCE_PARAMS, **params})

    # the validation loss contrasts subjects: at least 2 on each side of the split
    _min_split = 2

    _parameter_constraints: dict = {
        "encoder": [StrOptions({"vit", "cnn"})],
        "patch_size": [tuple, list],
        "embed_dim": [Interval(numbers.Integral, 6, None, closed="left")],
        "depth": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_heads": [Interval(numbers.Integral, 1, None, closed="left")],
        "cnn_widths": [tuple, list],
        "pooling": [StrOptions({"mean", "grid"}), tuple, list],
        "proj_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "proj_hidden_dim": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "projector_batchnorm": [StrOptions({"shared", "per_modality"})],
        "shared_encoder": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "momentum_schedule": [StrOptions({"constant", "cosine"})],
        "queue_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "queue_modalities": [StrOptions({"t2", "both"})],
        "augment": [StrOptions({"none", "intensity"}), callable],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"cosine_warm_restarts", "constant"})],
        "warmup_epochs": [Interval(numbers.Real, 0, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
        "output": [StrOptions({"pooled", "projection", "tokens"})],
        "target_shape": [StrOptions({"auto"}), tuple, list, None],
        "downsample": [Interval(numbers.Integral, 1, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
        "temp_folder": [str, os.PathLike, None],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
        "checkpoint_dir": [str, os.PathLike, None],
    }

    def __init__(self, encoder="cnn", *, patch_size=(14, 16, 14), embed_dim=24, depth=12,
                 n_heads=6, cnn_widths=(8, 16), pooling="grid", proj_dim=32,
                 proj_hidden_dim=256, projector_batchnorm="per_modality", shared_encoder=True,
                 momentum=0.9, momentum_schedule="constant", queue_size=65536,
                 temperature=0.1, queue_modalities="both", augment="intensity", lr=1e-3,
                 weight_decay=0.01, lr_schedule="cosine_warm_restarts", warmup_epochs=0,
                 max_epochs=100, batch_size=16,
                 validation_fraction=0.1, output="pooled",
                 target_shape="auto", downsample=1, cache_dir=None, temp_folder=None,
                 device="auto", precision="auto", num_workers=0, random_state=None,
                 verbose=0, callbacks=None, checkpoint_dir=None):
        self.encoder = encoder
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.n_heads = n_heads
        self.cnn_widths = cnn_widths
        self.pooling = pooling
        self.proj_dim = proj_dim
        self.proj_hidden_dim = proj_hidden_dim
        self.projector_batchnorm = projector_batchnorm
        self.shared_encoder = shared_encoder
        self.momentum = momentum
        self.momentum_schedule = momentum_schedule
        self.queue_size = queue_size
        self.temperature = temperature
        self.queue_modalities = queue_modalities
        self.augment = augment
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.output = output
        self.target_shape = target_shape
        self.downsample = downsample
        self.cache_dir = cache_dir
        self.temp_folder = temp_folder
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir

    # -- data -------------------------------------------------------------------------
    def _check_config(self, volume_shape):
        if len(tuple(self.patch_size)) != 3:
            raise ValueError(f"patch_size must be 3 ints; got {self.patch_size!r}.")
        if self.encoder == "vit":
            check_patch_size(volume_shape, self.patch_size)
            if self.embed_dim % self.n_heads:
                raise ValueError(
                    f"embed_dim={self.embed_dim} must be divisible by n_heads={self.n_heads}."
                )
        elif not self.cnn_widths or any(int(w) < 1 for w in self.cnn_widths):
            raise ValueError(f"cnn_widths must be positive ints; got {self.cnn_widths!r}.")
        if not isinstance(self.pooling, str) and (
                len(self.pooling) != 3 or any(int(g) < 1 for g in self.pooling)):
            raise ValueError(f"pooling must be 'grid', 'mean' or a grid of 3 positive ints "
                             f"such as (2, 2, 2); got {self.pooling!r}.")

    def _steps_per_epoch(self, n_train):
        """Optimizer steps per epoch (the last batch may be short; under torchrun each
        rank takes its share of every global batch, so the count is the same)."""
        return math.ceil(n_train / self.batch_size)

    def _warn_if_it_cannot_learn(self, n_train):
        """Warn (naming the parameters to change) where the data are too few for the
        configuration: an EMA key encoder that barely leaves its random initialisation
        in the steps available, or a queue longer than the other training subjects."""
        steps = self.max_epochs * self._steps_per_epoch(n_train)
        if self.momentum_schedule == "cosine":  # the product of the scheduled momenta
            schedule = MomentumSchedule(self.momentum, steps)
            kept = math.exp(sum(math.log(max(schedule.momentum_at(k), 1e-300))
                                for k in range(steps)))
        else:
            kept = self.momentum ** steps if steps else 1.0
        if steps and kept > 0.05:
            suggestion = max(0.0, 1.0 - 3.0 / steps)
            cosine = self.momentum_schedule == "cosine"
            which = " (cosine schedule)" if cosine else ""
            fix = " with momentum_schedule='constant'" if cosine else ""
            warnings.warn(
                f"momentum={self.momentum}{which} over the {steps} training steps available "
                f"({n_train} subjects, batch_size={self.batch_size}, max_epochs="
                f"{self.max_epochs}) leaves {kept:.0%} of the random initial weights in the "
                f"key encoder, so the keys barely learn. Use momentum <= {suggestion:.3g}"
                f"{fix} or more epochs/subjects.", ConfigurationWarning, stacklevel=4)
        if self.queue_size is not None and self.queue_size_ < self.queue_size:
            warnings.warn(
                f"queue_size={self.queue_size} is more than the {n_train} training subjects "
                f"can fill with one key each besides the current batch; the queue "
                f"holds {self.queue_size_} keys (queue_size_). Pass queue_size <= "
                f"{self.queue_size_} to choose it yourself.", ConfigurationWarning,
                stacklevel=4)

    def _make_net(self, volume_shape, n_train, valid_ds, device):
        callbacks = [copy.deepcopy(cb) for cb in (self.callbacks or [])]
        if self.lr_schedule == "cosine_warm_restarts":
            callbacks.append(("lr_scheduler", LRScheduler(
                policy=torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
                **COSINE_WARM_RESTARTS)))
        steps_per_epoch = self._steps_per_epoch(n_train)
        if self.warmup_epochs:
            callbacks.append(("lr_warmup", LinearWarmup(
                max(1, round(self.warmup_epochs * steps_per_epoch)))))
        if self.momentum_schedule == "cosine":
            callbacks.append(("momentum_schedule", MomentumSchedule(
                self.momentum, self.max_epochs * steps_per_epoch)))
        if valid_ds is not None:
            callbacks.append(("restore_best", RestoreBestValidLoss()))
        rank, size = world()
        sharded = {}
        if in_torchrun():  # this rank's share of every global batch
            sampler = ShardedEpochSampler(n_train, self.batch_size, self._seed, rank, size)
            sharded = dict(iterator_train__sampler=sampler, iterator_train__shuffle=False,
                           iterator_train__batch_size=self.batch_size // size)
            callbacks.append(("shard_epoch", _SamplerEpoch(sampler)))
        if self.verbose and rank == 0:
            callbacks.append(("progress_bar", ProgressBar()))
        if self.checkpoint_dir is not None:  # last: it restores after the others set up
            callbacks.append(("checkpoint", EpochCheckpoint(
                self.checkpoint_dir, meta=getattr(self, "_checkpoint_meta", None))))
        pin = device.type == "cuda"
        return MoCoNet(
            module=MomentumContrast,
            module__volume_shape=tuple(volume_shape),
            module__encoder=self.encoder,
            module__patch_size=tuple(self.patch_size),
            module__embed_dim=self.embed_dim,
            module__depth=self.depth,
            module__n_heads=self.n_heads,
            module__cnn_widths=tuple(self.cnn_widths),
            module__pooling=(self.pooling if isinstance(self.pooling, str)
                             else tuple(self.pooling)),
            module__proj_dim=self.proj_dim,
            module__proj_hidden_dim=self.proj_hidden_dim,
            module__projector_batchnorm=self.projector_batchnorm,
            module__shared_encoder=self.shared_encoder,
            module__momentum=self.momentum,
            module__queue_size=self.queue_size_,
            module__queue_modalities=self.queue_modalities,
            criterion=SymmetricInfoNCE,
            criterion__temperature=self.temperature,
            optimizer=torch.optim.AdamW,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            **({"iterator_train__shuffle": True} if not sharded else sharded),
            iterator_train__num_workers=self.num_workers,
            iterator_train__pin_memory=pin,
            iterator_valid__num_workers=self.num_workers,
            iterator_valid__pin_memory=pin,
            train_split=None if valid_ds is None else predefined_split(valid_ds),
            callbacks=callbacks,
            device=str(device),
            precision=self.precision,
            output=self.output,
            augmentation=(IntensityAugmentation() if self.augment == "intensity" else
                          None if isinstance(self.augment, str) else self.augment),
            verbose=self.verbose if rank == 0 else 0,
        )

    # -- fit / transform --------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the encoder on paired volumes.

        Parameters
        ----------
        X : ndarray of shape (n, 2, D, H, W), DataFrame with columns ``t1``, ``t2`` \
(NIfTI paths; index = subject ids), or PairedVolumes
            Channel 0 / column ``t1`` is T1, channel 1 / ``t2`` is T2.
        y : None
            Ignored (self-supervised); accepted for Pipeline compatibility.

        Returns
        -------
        self : object

        Warns
        -----
        ConfigurationWarning
            The configuration cannot learn at the data's scale (an EMA that barely moves,
            a queue the data cannot fill); the message names the parameters to change.
        sklearn.exceptions.ConvergenceWarning
            The validation retrieval of the returned weights is within 2 binomial SEs of
            chance: the embedding has not learned the T1-T2 correspondence.
        """
        pairs = self._pairs(X)
        volume_shape = tuple(pairs.volume_shape)
        self._check_config(volume_shape)
        self.device_ = resolve_device(self.device)
        resolve_precision(self.device_, self.precision)
        random_state = self.random_state
        if in_torchrun():  # data-parallel: one process group, the same seed on every rank
            setup_from_env(self.device_)
            if random_state is None:
                import torch.distributed as dist

                s = torch.randint(0, 2**31 - 1, (1,))
                dist.broadcast(s, src=0)
                random_state = int(s.item())
        rng = check_random_state(random_state)
        idx_train, idx_valid = self._split(len(pairs), rng)
        if len(idx_train) < 2:
            raise ValueError(f"at least 2 subjects are needed to train; got {len(idx_train)}.")
        self._seed = seed_everything(rng)
        self.queue_size_ = effective_queue_size(
            len(idx_train) if self.queue_size is None else self.queue_size, len(idx_train),
            self.batch_size)
        self._warn_if_it_cannot_learn(len(idx_train))
        train_ds = IndexedPairs(Subset(pairs, idx_train))
        valid_ds = IndexedPairs(Subset(pairs, idx_valid)) if len(idx_valid) else None
        saved = self._checkpoint(pairs, idx_train, volume_shape)
        net = self._make_net(volume_shape, len(idx_train), valid_ds, self.device_)
        if saved is None:
            net.fit(train_ds, y=None)
        else:
            self._resume(net, saved, train_ds)
        net.train_split = None  # drop the reference to the training data
        self.net_ = net
        self.history_ = net.history
        self.volume_shape_ = volume_shape
        self.n_train_subjects_ = len(idx_train)
        self.validation_ids_ = pairs.subject_ids[idx_valid]
        restore = dict(net.callbacks_).get("restore_best")
        self.best_epoch_ = None if restore is None else restore.best_epoch_
        self._warn_if_it_did_not_learn(len(idx_valid))
        return self

    def _warn_if_it_did_not_learn(self, n_valid):
        """ConvergenceWarning when the validation retrieval of the returned weights (the
        best epoch's, else the last) is within 2 binomial SEs of chance: when the
        projections carry nothing cross-modal, recall@k in each direction is
        Binomial(n_valid, k / n_valid) / n_valid, and the logged mean of the two
        directions has at most that SD (k: the largest logged of 10, 5, 1 with
        k / n_valid <= 0.25)."""
        from sklearn.exceptions import ConvergenceWarning

        if not n_valid or not len(self.history_):
            return
        logged = {10: "valid_recall@10", 5: "valid_recall@5", 1: "valid_top1"}
        k = next((k for k, key in logged.items()
                  if k / n_valid <= 0.25 and key in self.history_[-1]), None)
        if k is None:
            return
        key = logged[k]
        row = self.history_[-1] if self.best_epoch_ is None else next(
            (h for h in self.history_ if h["epoch"] == self.best_epoch_), self.history_[-1])
        p0 = k / n_valid
        bound = p0 + 2.0 * math.sqrt(p0 * (1.0 - p0) / n_valid)
        got = float(row[key])
        if got <= bound:
            warnings.warn(
                f"After {len(self.history_)} epochs the validation retrieval is at chance "
                f"({key.removeprefix('valid_')} {got:.3f} on {n_valid} validation subjects; "
                f"chance {p0:.3f}, 2-SE bound {bound:.3f}): the embedding has not learned "
                "the T1-T2 correspondence. More subjects or max_epochs may help; under "
                "strong acquisition nuisance (bias fields, noisy T2, per-contrast brain "
                "masks, misregistration) this recipe may not learn at small scale "
                "(docs/embedder.md).", ConvergenceWarning, stacklevel=3)

    _NOT_IN_CHECKPOINT = ("verbose", "checkpoint_dir", "callbacks", "num_workers",
                          "cache_dir", "temp_folder", "max_epochs")

    def _checkpoint(self, pairs, idx_train, volume_shape):
        """The saved training state to resume from (None: train from the start)."""
        if self.checkpoint_dir is None:
            return None
        import hashlib

        ids = hashlib.sha256("\x1f".join(map(str, pairs.subject_ids[idx_train]))
                             .encode()).hexdigest()[:16]
        meta = {"params": {k: repr(v) for k, v in sorted(self.get_params().items())
                           if k not in self._NOT_IN_CHECKPOINT},
                "train_ids": ids, "volume_shape": list(volume_shape),
                "queue_size": int(self.queue_size_)}
        self._checkpoint_meta = meta
        saved = EpochCheckpoint.load(self.checkpoint_dir)
        if saved is not None and saved.get("meta") != meta:
            old = saved.get("meta") or {}
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            if "params" in diff:
                p_old, p_new = old.get("params", {}), meta["params"]
                diff = [f"params {sorted(k for k in p_new if p_old.get(k) != p_new[k])}"] + [
                    d for d in diff if d != "params"]
            raise ValueError(
                f"checkpoint_dir {str(self.checkpoint_dir)!r} holds a checkpoint of a "
                f"different training run ({', '.join(diff)} differ); use a new folder, or "
                "delete it to train afresh.")
        return saved

    def _resume(self, net, saved, train_ds):
        """Continue training from ``saved`` (the state after its last complete epoch)."""
        from skorch.history import History

        done = len(saved["history"])
        net.initialize()
        cb = dict(net.callbacks_)["checkpoint"]
        logger.info("resuming training after epoch %d of %d from %s", done, self.max_epochs,
                    self.checkpoint_dir)
        self.resumed_from_epoch_ = done
        if done >= self.max_epochs:  # finished before the kill: the saved weights
            net.module_.load_state_dict(saved["module"])
            best = dict(saved.get("restore_best") or {})
            if best.get("_state") is not None:   # as RestoreBestValidLoss would at the end
                net.module_.load_state_dict(best["_state"])
            restore = dict(net.callbacks_).get("restore_best")
            if restore is not None:
                best["_state"] = None
                restore.__dict__.update(best)
            net.history = History(saved["history"])
            return
        cb.resume = saved
        net.history = History(saved["history"])
        # the LR scheduler is rebuilt at epoch `done` from the optimizer's param groups
        # (initial_lr); the checkpoint callback then restores its exact state
        net.optimizer_.load_state_dict(saved["optimizer"])
        net.partial_fit(train_ds, y=None, epochs=self.max_epochs - done)

    def _n_features_per_modality(self):
        module = self.net_.module_
        return {"pooled": module.pooled_dim, "projection": module.proj_dim,
                "tokens": module.n_tokens * module.embed_dim}[self.output]

    def transform(self, X):
        """Embed each modality of each subject with the trained query encoder.

        Parameters
        ----------
        X : ndarray (n, 2, D, H, W), DataFrame of NIfTI paths, or PairedVolumes
            Same form and grid as in :meth:`fit`.

        Returns
        -------
        Z : ndarray of shape (n, 2 * d), or DataFrame for DataFrame/PairedVolumes input
            Columns ``t1_000, ...`` then ``t2_000, ...``; a DataFrame is indexed by the
            subject ids. ``d`` is the pooled width (``'pooled'``), ``proj_dim``
            (``'projection'``) or ``n_tokens * embed_dim`` (``'tokens'``, a
            :class:`numpy.memmap` in ``temp_folder``; tokens are stored token-major).
        """
        check_is_fitted(self, "net_")
        pairs = self._pairs(X)
        self._check_volume_shape(pairs)
        if self.output not in ("pooled", "projection", "tokens"):
            raise ValueError(f"output must be 'pooled', 'projection' or 'tokens'; "
                             f"got {self.output!r}.")
        n, d = len(pairs), self._n_features_per_modality()
        if self.output == "tokens":
            fd, path = tempfile.mkstemp(prefix="hcl_tokens_", suffix=".dat",
                                        dir=self.temp_folder)
            os.close(fd)
            out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, 2 * d))
        else:
            out = np.empty((n, 2 * d), dtype=np.float32)
        net = self.net_
        net.output = self.output
        start = 0
        from tqdm.auto import tqdm

        with tqdm(total=n, desc="embedding", disable=not self.verbose, unit="subject") as bar:
            for z in net.forward_iter(IndexedPairs(pairs), training=False):
                b = len(z)
                out[start:start + b] = z.reshape(b, -1).numpy()
                start += b
                bar.update(b)
        if isinstance(out, np.memmap):
            out.flush()
        return self._output(X, pairs, out)
