"""What the paired-volume embedders share: one reading of their data parameters, one split,
one dataset wrapper, one output convention.

:class:`PairedVolumeEmbedder` is the base of
:class:`~hcl_sklearn.MomentumContrastiveEmbedder` and
:class:`~hcl_sklearn.AutoencoderEmbedder`; their training step with mixed precision is
:class:`~hcl_sklearn.embed.nn.runtime.AmpTrainStep`, also shared.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from torch.utils.data import Dataset

from ..data.volumes import MODALITIES, PairedVolumes, as_paired_volumes

__all__ = ["IndexedPairs", "PairedVolumeEmbedder"]


class IndexedPairs(Dataset):
    """``(pair, index)`` items: the ``(X, y)`` form skorch's steps unpack (``y`` is the
    subject's position, which the contrastive loss uses to leave out its own keys)."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        return self.pairs[index], index


class PairedVolumeEmbedder(TransformerMixin, BaseEstimator):
    """Base of the paired T1/T2 embedders (not an estimator on its own).

    Subclasses define ``_n_features_per_modality()`` and use :meth:`_pairs`,
    :meth:`_split`, :meth:`_check_volume_shape` and :meth:`_output`.
    """

    #: the fewest subjects each side of the validation split may have
    _min_split = 1

    def _pairs(self, X):
        """``X`` as a :class:`PairedVolumes` with this estimator's data parameters
        (``target_shape``, ``downsample``, ``cache_dir``; the same meaning in every
        embedder)."""
        return as_paired_volumes(X, self.target_shape, self.downsample, self.cache_dir)

    def _split(self, n, rng):
        """Training and validation positions (``validation_fraction`` of the subjects,
        rounded up, held out; ``None``: no validation split)."""
        if self.validation_fraction is None:
            if n < self._min_split:
                raise ValueError(f"at least {self._min_split} subject(s) are needed to train; "
                                 f"got {n}.")
            return np.arange(n), np.array([], dtype=int)
        n_valid = math.ceil(self.validation_fraction * n)
        n_train = n - n_valid
        if n_valid < self._min_split or n_train < self._min_split:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {n} subjects gives "
                f"{n_train} training and {n_valid} validation subject(s); both need at "
                f"least {self._min_split}. Raise validation_fraction, add subjects, or pass "
                "validation_fraction=None.")
        perm = rng.permutation(n)
        return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])

    def _check_volume_shape(self, pairs):
        if tuple(pairs.volume_shape) != tuple(self.volume_shape_):
            raise ValueError(
                f"X has preprocessed volume shape {tuple(pairs.volume_shape)} but the "
                f"embedder was fitted on {tuple(self.volume_shape_)}. Use the same grid "
                "(target_shape, downsample) as in fit.")

    def _output(self, X, pairs, out):
        """A DataFrame indexed by subject id for DataFrame / PairedVolumes input, else the
        array (``set_output`` overrides this)."""
        if isinstance(X, (pd.DataFrame, PairedVolumes)):
            return pd.DataFrame(out, index=pairs.subject_ids.rename("subject_id"),
                                columns=self.get_feature_names_out(), copy=False)
        return out

    def get_feature_names_out(self, input_features=None):
        """Output column names: ``t1_000, ..., t2_000, ...``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        names : ndarray of str objects
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "net_")
        d = self._n_features_per_modality()
        width = max(3, len(str(d - 1)))
        return np.asarray([f"{m}_{i:0{width}d}" for m in MODALITIES for i in range(d)],
                          dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.allow_nan = False
        return tags
