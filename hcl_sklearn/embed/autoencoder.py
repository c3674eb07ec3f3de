"""``AutoencoderEmbedder``: the single-modality UDIP autoencoder baseline as a transformer.

One 3-D convolutional autoencoder per modality (:mod:`hcl_sklearn.embed.nn.udip`), trained
to reconstruct its own image with the MSE inside the brain mask; the 128-d linear
latent of each model is the embedding. The estimator follows the API of
:class:`~hcl_sklearn.MomentumContrastiveEmbedder`: paired volumes in, a
``(n, 2 * latent_dim)`` table out with columns ``t1_000 …`` and ``t2_000 …``.
"""

from __future__ import annotations

import copy
import logging
import numbers
import os
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import LRScheduler, PrintLog, ProgressBar
from skorch.dataset import unpack_data
from skorch.helper import predefined_split
from torch.utils.data import Subset

from .callbacks import NonFiniteLossGuard, RestoreBestValidLoss
from .nn.runtime import (
    PRECISIONS,
    autocast_context,
    AmpTrainStep,
    resolve_device,
    seed_everything,
)
from .nn.udip import PairedAutoencoders, masked_mse
from ..data.volumes import MODALITIES
from .base import IndexedPairs, PairedVolumeEmbedder

logger = logging.getLogger(__name__)

__all__ = ["AutoencoderEmbedder", "MaskedReconstructionNet"]


class MaskedReconstructionNet(AmpTrainStep, NeuralNet):
    """skorch ``NeuralNet`` training autoencoders with the MSE inside the brain mask.

    The module maps paired volumes ``(batch, C, D, H, W)`` to
    ``(reconstruction, latents)``; the loss is the mean over the ``C`` channels of
    :func:`~hcl_sklearn.embed.nn.udip.masked_mse` with mask ``X != 0``. Per-channel
    losses are logged in the history as ``train_loss_<name>`` and
    ``valid_loss_<name>``. The forward pass runs under the autocast of
    ``precision`` (a GradScaler is used for fp16).

    Parameters
    ----------
    module : nn.Module class or instance
    *args, **kwargs
        As for :class:`skorch.NeuralNet`.
    precision : {'auto', 'fp32', 'bf16', 'fp16'}, default='auto'
    channel_names : tuple of str, default=('t1', 't2')
    output : {'both', 'latents', 'reconstruction'}, default='both'
        What ``infer`` (and so ``forward_iter``) returns: the module's
        ``(reconstruction, latents)`` (training), or one of them (embedding).
    """

    def __init__(self, module, *args, precision="auto", channel_names=MODALITIES,
                 criterion=torch.nn.MSELoss, output="both", **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)
        self.precision = precision
        self.channel_names = channel_names
        self.output = output

    def infer(self, x, **fit_params):
        with autocast_context(self.device, self.precision):
            if self.output == "latents":
                x = x.to(self.device)
                return self.module_.encode(x).float().reshape(len(x), -1)
            out = super().infer(x, **fit_params)
            if self.output == "reconstruction":
                return out[0].float()
            return out

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Mean over channels of the masked MSE between reconstruction and input ``X``."""
        recon = y_pred[0] if isinstance(y_pred, (tuple, list)) else y_pred
        X = X.to(recon.device)
        parts = [masked_mse(recon[:, c], X[:, c]) for c in range(X.shape[1])]
        prefix = "train_loss_" if training else "valid_loss_"
        for name, part in zip(self.channel_names, parts):
            self.history.record_batch(prefix + name, float(part.detach()))
        return torch.stack(parts).mean()

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self._backward(loss)
        return {"loss": loss, "y_pred": y_pred}

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Average the per-channel batch losses of the epoch (weighted by batch size)."""
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                             **kwargs)
        batches = self.history[-1]["batches"]
        for prefix, flag in (("train_loss_", True), ("valid_loss_", False)):
            for name in self.channel_names:
                key = prefix + name
                rows = [b for b in batches if key in b]
                if rows:
                    sizes = np.array([b["train_batch_size" if flag else "valid_batch_size"]
                                      for b in rows], dtype=float)
                    values = np.array([b[key] for b in rows])
                    self.history.record(key, float(np.average(values, weights=sizes)))


class AutoencoderEmbedder(PairedVolumeEmbedder):
    """Single-modality 3-D convolutional autoencoders ("UDIP") for T1 and T2.

    The baseline the contrastive method is compared with (docs/autoencoder.md): one
    autoencoder per modality, a convolution block, four encoder blocks, a linear
    ``latent_dim``-d latent, four decoder blocks, trained with the MSE inside the brain
    mask (``mask = input != 0``). The two models share nothing; they are trained in
    one pass over the data (same batches), which for independent parameters is the
    same as training each on its own. The embedding of a subject is the pair of
    latents.

    Parameters
    ----------
    latent_dim : int, default=128
        Size of each modality's latent (the reference's 128).
    base_channels : int, default=16
        Channels of the first convolution block; the encoder blocks have 2, 4, 8 and
        16 times as many (the reference's 16 → 256). Use 4 for CPU-sized runs.
    lr : float, default=2.5e-4
        Learning rate (the reference's 2.51e-4).
    weight_decay : float, default=0.0
        AdamW weight decay (0 = Adam, as in the reference).
    max_epochs : int, default=100
        The reference trains 100 epochs.
    batch_size : int, default=8
        The reference used 36 across 4 GPUs (9 per GPU).
    validation_fraction : float or None, default=0.1
        Fraction of the subjects held out each epoch for ``valid_loss``; the
        learning rate is halved after 4 epochs without improvement (as in the
        reference) and the weights of the best validation epoch are kept. ``None``
        trains on all subjects and monitors the training loss.
    device : str, default='auto'
        ``'auto'`` = cuda when available, else cpu (see :mod:`hcl_sklearn.embed.nn.runtime`).
    precision : {'auto', 'fp32', 'bf16', 'fp16'}, default='auto'
        Autocast precision: bf16/fp16 on a GPU, fp32 on the CPU for ``'auto'``.
    num_workers : int, default=0
        DataLoader worker processes (reading and preprocessing NIfTI files).
    target_shape : 'auto', tuple of 3 int or None, default='auto'
        Grid the volumes are padded/cropped to before the network (see
        :class:`~hcl_sklearn.data.volumes.PairedVolumes`), with the same meaning as in
        :class:`~hcl_sklearn.MomentumContrastiveEmbedder`: ``'auto'`` keeps the grid of an
        array and uses the reference 182 x 224 x 182 for NIfTI files; ``None`` keeps every
        input's grid. The network pads to a multiple of 16 internally and crops its output
        back, so any grid works.
    downsample : int, default=1
        Integer average-pooling factor applied to every volume (e.g. 4 for CPU runs).
    cache_dir : str or None, default=None
        Cache of preprocessed NIfTI images (float16 ``.npy``), see ``PairedVolumes``.
        ``target_shape``, ``downsample`` and ``cache_dir`` apply to array and
        DataFrame input; a :class:`~hcl_sklearn.data.volumes.PairedVolumes` is used with
        its own settings.
    random_state : int, RandomState instance or None, default=None
        Seeds weights, batch order and the validation split; a fixed value gives
        identical embeddings on the CPU.
    verbose : int, default=0
        0 silent; 1 a tqdm progress bar per epoch and the epoch table in the log
        (``logging`` at INFO level).
    callbacks : list of (name, skorch Callback), optional
        Extra skorch callbacks (copied at each fit), as in the contrastive embedder, e.g.
        ``[("clip", GradientNormClipping(1.0))]``; under fp16 they see unscaled gradients.

    Attributes
    ----------
    net_ : MaskedReconstructionNet
        The fitted skorch net; ``net_.module_.models['t1']`` and ``['t2']`` are the
        two :class:`~hcl_sklearn.embed.nn.udip.UDIPAutoencoder` models.
    history_ : skorch.History
        Per-epoch ``train_loss``/``valid_loss`` (mean of the modalities) and
        ``train_loss_t1``, ``valid_loss_t2``, … per modality.
    volume_shape_ : tuple of int
        Spatial shape of the preprocessed volumes the models were built for.
    validation_ids_ : pandas.Index
        Subjects held out for validation (empty without a validation split).
    best_epoch_ : int or None
        Epoch whose weights were kept (None without validation).
    device_ : torch.device
    n_features_out_ : int
        ``2 * latent_dim``.

    See Also
    --------
    hcl_sklearn.MomentumContrastiveEmbedder : the contrastive method.
    hcl_sklearn.ModalityPCA : the per-modality reduction that usually follows.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_sklearn import AutoencoderEmbedder
    >>> X = np.random.default_rng(0).random((6, 2, 16, 20, 16)).astype("float32")
    >>> ae = AutoencoderEmbedder(latent_dim=4, base_channels=2, max_epochs=1,
    ...                          batch_size=3, validation_fraction=None, random_state=0)
    >>> ae.fit_transform(X).shape
    (6, 8)
    >>> list(ae.get_feature_names_out()[[0, 4]])
    ['t1_000', 't2_000']
    """

    _parameter_constraints: ClassVar[dict] = {
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "base_channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "target_shape": [StrOptions({"auto"}), tuple, list, None],
        "downsample": [Interval(numbers.Integral, 1, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
    }

    def __init__(self, latent_dim=128, *, base_channels=16, lr=2.5e-4, weight_decay=0.0,
                 max_epochs=100, batch_size=8, validation_fraction=0.1, device="auto",
                 precision="auto", num_workers=0, target_shape="auto", downsample=1,
                 cache_dir=None, random_state=None, verbose=0, callbacks=None):
        self.latent_dim = latent_dim
        self.base_channels = base_channels
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.target_shape = target_shape
        self.downsample = downsample
        self.cache_dir = cache_dir
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        self._validate_params()

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train one autoencoder per modality.

        Parameters
        ----------
        X : ndarray (n, 2, D, H, W), DataFrame with columns ``t1``, ``t2`` of NIfTI paths,
            or PairedVolumes
            Paired volumes; channel 0 / column ``t1`` is T1.
        y : None
            Ignored.

        Returns
        -------
        self : AutoencoderEmbedder
        """
        self._check_params()
        volumes = self._pairs(X)
        n = len(volumes)
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        idx_train, idx_valid = self._split(n, rng)
        seed_everything(rng)
        self.volume_shape_ = tuple(volumes.volume_shape)
        valid_ds = IndexedPairs(Subset(volumes, idx_valid)) if len(idx_valid) else None

        monitor = "train_loss" if valid_ds is None else "valid_loss"
        callbacks = [
            ("non_finite", NonFiniteLossGuard()),
            ("lr_plateau", LRScheduler(policy="ReduceLROnPlateau", monitor=monitor,
                                       mode="min", patience=4, factor=0.5,
                                       min_lr=self.lr / 1000)),
        ]
        if valid_ds is not None:
            callbacks.append(("restore_best", RestoreBestValidLoss()))
        if self.verbose:
            callbacks.append(("progress", ProgressBar()))
        callbacks += [copy.deepcopy(cb) for cb in (self.callbacks or [])]
        pin = self.device_.type == "cuda"
        self.net_ = MaskedReconstructionNet(
            PairedAutoencoders,
            module__input_shape=self.volume_shape_,
            module__latent_dim=int(self.latent_dim),
            module__base_channels=int(self.base_channels),
            module__modalities=MODALITIES,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=float(self.weight_decay),
            lr=float(self.lr),
            max_epochs=int(self.max_epochs),
            batch_size=int(self.batch_size),
            iterator_train__shuffle=True,
            iterator_train__num_workers=int(self.num_workers),
            iterator_train__pin_memory=pin,
            iterator_valid__num_workers=int(self.num_workers),
            iterator_valid__pin_memory=pin,
            train_split=None if valid_ds is None else predefined_split(valid_ds),
            callbacks=callbacks,
            callbacks__print_log=PrintLog(sink=logger.info),
            device=str(self.device_),
            precision=self.precision,
            verbose=int(self.verbose),
        )
        logger.info("training T1 and T2 UDIP autoencoders on %d subjects (%d for validation), "
                    "volumes %s, device %s", len(idx_train), len(idx_valid),
                    self.volume_shape_, self.device_)
        self.net_.fit(IndexedPairs(Subset(volumes, idx_train)), None)
        self.net_.train_split = None  # drop the reference to the validation data
        self.validation_ids_ = volumes.subject_ids[idx_valid]
        restore = dict(self.net_.callbacks_).get("restore_best")
        self.best_epoch_ = None if restore is None else restore.best_epoch_
        self.history_ = self.net_.history
        self.n_features_out_ = 2 * int(self.latent_dim)
        return self

    # ------------------------------------------------------------------ transform
    def transform(self, X):
        """Latents of both modalities.

        Parameters
        ----------
        X : ndarray (n, 2, D, H, W), DataFrame of NIfTI paths, or PairedVolumes

        Returns
        -------
        Z : DataFrame or ndarray of shape (n, 2 * latent_dim)
            Columns ``t1_000 …``, ``t2_000 …``. A DataFrame indexed by subject id when
            ``X`` is a DataFrame or a PairedVolumes, else an ndarray (``set_output``
            overrides this).
        """
        check_is_fitted(self, "net_")
        volumes = self._pairs(X)
        self._check_volume_shape(volumes)
        out = self._run(volumes, "latents", (self.n_features_out_,))
        return self._output(X, volumes, out)

    def _run(self, volumes, output, shape):
        """The embedding loop (skorch's ``forward_iter``, as in the contrastive embedder)."""
        from tqdm.auto import tqdm

        net = self.net_
        net.output = output
        out = np.empty((len(volumes), *shape), dtype=np.float32)
        start = 0
        try:
            with tqdm(total=len(volumes), desc="embedding", disable=not self.verbose,
                      unit="subject") as bar:
                for z in net.forward_iter(IndexedPairs(volumes), training=False):
                    out[start:start + len(z)] = z.numpy()
                    start += len(z)
                    bar.update(len(z))
        finally:
            net.output = "both"
        return out

    def _n_features_per_modality(self):
        return self.n_features_out_ // 2

    def reconstruct(self, X):
        """Reconstructed volumes ``(n, 2, D, H, W)`` (float32) of the preprocessed input."""
        check_is_fitted(self, "net_")
        volumes = self._pairs(X)
        self._check_volume_shape(volumes)
        return self._run(volumes, "reconstruction", (2, *self.volume_shape_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.requires_fit = True
        return tags
