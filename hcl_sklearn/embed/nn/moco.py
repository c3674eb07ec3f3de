"""Momentum contrast (MoCo) between paired T1 and T2 volumes.

The module holds the query encoder and projection head (trained by back-propagation),
their key copies (an exponential moving average of the query weights, updated once
per training step *before* the keys are computed) and a queue of past keys used as
negatives. The loss is the symmetric cross-modal InfoNCE of the reference::

    loss = 1/2 * (InfoNCE(q_T1, k_T2, negatives) + InfoNCE(q_T2, k_T1, negatives))

where ``InfoNCE(q, k+, N) = -log( exp(q.k+/tau) / (exp(q.k+/tau) + sum_n exp(q.n/tau)) )``
on L2-normalised vectors.

Queues (``queue_modalities``):

* ``'t2'`` (reference): only the T2 keys are enqueued; both directions draw their
  negatives from this T2 queue, so T1->T2 negatives are cross-modal but T2->T1
  negatives are of the query's own modality;
* ``'both'``: a T1 queue is kept as well; each direction draws its negatives from the
  queue of its positive's modality (T1->T2 from the T2 queue, T2->T1 from the T1
  queue), so a negative is always of the same modality as the positive.

Queues start as random unit vectors (as in MoCo) and are filled circularly.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .cnn import ConvEncoder3d
from .distributed import global_batch_moments, world
from .vit import VisionTransformer3d

__all__ = [
    "MomentumContrast",
    "ProjectionHead",
    "SmallBatchSafeBatchNorm1d",
    "SymmetricInfoNCE",
    "build_encoder",
    "in_batch_info_nce",
    "info_nce",
]

QUEUE_MODALITIES = ("t2", "both")
PROJECTOR_BATCHNORM = ("shared", "per_modality")


# --------------------------------------------------------------------------- losses
def info_nce(query, positive, negatives, temperature, exclude=None):
    """InfoNCE of each query against its positive and a shared set of negatives.

    Parameters
    ----------
    query, positive : Tensor of shape (B, p)
        L2-normalised query and positive key vectors (row ``i`` is a pair).
    negatives : Tensor of shape (K, p)
        L2-normalised negative keys, shared by all queries (the queue).
    temperature : float
    exclude : bool Tensor of shape (B, K), optional
        ``True`` where negative ``n`` of query ``i`` is left out of its softmax: a stale
        key of the query's own subject, a false negative.

    Returns
    -------
    loss : scalar Tensor (float32)
        Mean over the batch of ``-log softmax([q.k+, q.n_1, ..., q.n_K] / tau)[0]``
        (excluded negatives removed from the sum).

    Examples
    --------
    >>> import torch, torch.nn.functional as F
    >>> from hcl_sklearn.embed.nn.moco import info_nce
    >>> q = F.normalize(torch.ones(1, 2), dim=1)
    >>> round(float(info_nce(q, q, -q, temperature=1.0)), 4)  # log(1 + e^-2)
    0.1269
    """
    l_pos = (query * positive).sum(dim=1, keepdim=True)
    l_neg = query @ negatives.t()
    logits = torch.cat([l_pos, l_neg], dim=1).float() / temperature
    if exclude is not None:
        pad = torch.zeros(exclude.shape[0], 1, dtype=torch.bool, device=exclude.device)
        logits = logits.masked_fill(torch.cat([pad, exclude], dim=1), float("-inf"))
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)


def in_batch_info_nce(a, b, temperature):
    """Symmetric InfoNCE with in-batch negatives (the reference's validation loss).

    ``1/2 (CE(a b^T / tau, I) + CE(b a^T / tau, I))``: row ``i`` of ``a`` must pick
    row ``i`` of ``b`` among all rows of ``b`` and vice versa. Its chance level is
    ``log(B)``; a batch of one subject always gives 0.
    """
    logits = (a @ b.t()).float() / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


class SymmetricInfoNCE(nn.Module):
    """The training criterion: ``1/2 (InfoNCE(q1, k2, n1) + InfoNCE(q2, k1, n2))``.

    Parameters
    ----------
    temperature : float, default=0.07
    """

    def __init__(self, temperature=0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, q1, q2, k1, k2, negatives_t1_query, negatives_t2_query, exclude=None):
        return 0.5 * (info_nce(q1, k2, negatives_t1_query, self.temperature, exclude)
                      + info_nce(q2, k1, negatives_t2_query, self.temperature, exclude))

    def in_batch(self, z1, z2):
        """Validation loss: symmetric InfoNCE with in-batch negatives."""
        return in_batch_info_nce(z1, z2, self.temperature)


# --------------------------------------------------------------------------- heads
class SmallBatchSafeBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` that uses its running statistics on batches smaller than 3.

    Batch statistics of one sample are undefined (torch raises) and those of two
    samples map every feature to +-1, destroying the representation. On such
    batches this layer normalises with the running mean/variance instead (and does
    not update them), exactly as in eval mode; larger batches behave as usual.
    """

    min_batch = 3

    def forward(self, x):
        if self.training:
            if world()[1] > 1:  # data-parallel: the statistics of the global batch
                mean, var, n = global_batch_moments(x)
                if n >= self.min_batch:
                    with torch.no_grad():
                        m = self.momentum
                        self.running_mean.mul_(1 - m).add_(m * mean.detach())
                        self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
                        self.num_batches_tracked += 1
                    y = (x - mean) / torch.sqrt(var + self.eps)
                    return y * self.weight + self.bias
            elif x.shape[0] >= self.min_batch:
                return super().forward(x)
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                self.bias, training=False, momentum=0.0, eps=self.eps)
        return super().forward(x)


#: ``pooling='grid'`` keeps at most this many token-grid cells per axis (8^3 = 512 cells).
MAX_GRID_CELLS = 8


class ProjectionHead(nn.Module):
    """``Linear(d, h) - BatchNorm - ReLU - Linear(h, p)`` then L2 normalisation.

    Parameters
    ----------
    in_dim : int
    proj_dim : int, default=256
    hidden_dim : int or None, default=None
        Width ``h`` of the hidden layer; None: ``in_dim`` (reference, 384 -> 384 -> 256).
        A flattened token grid makes ``in_dim`` large, where a narrower hidden layer
        costs ``in_dim * h`` instead of ``in_dim ** 2`` weights.
    batchnorm : {'shared', 'per_modality'}, default='shared'
        ``'shared'``: one BatchNorm for both modalities (reference); in training each
        call normalises with its own batch, in eval mode both modalities use the
        same running statistics. ``'per_modality'``: the T2 call (``modality=1``) has
        its own BatchNorm (running statistics and affine), so eval mode normalises
        each modality as training did; the linear layers stay shared.
    """

    def __init__(self, in_dim, proj_dim=256, batchnorm="shared", hidden_dim=None):
        super().__init__()
        if batchnorm not in PROJECTOR_BATCHNORM:
            raise ValueError(f"projector batchnorm must be one of {PROJECTOR_BATCHNORM}; "
                             f"got {batchnorm!r}.")
        hidden = in_dim if hidden_dim is None else int(hidden_dim)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), SmallBatchSafeBatchNorm1d(hidden),
            nn.ReLU(inplace=True), nn.Linear(hidden, proj_dim),
        )
        self.t2_norm = (SmallBatchSafeBatchNorm1d(hidden) if batchnorm == "per_modality"
                        else None)

    def forward(self, x, modality=0):
        """Unit-norm projections of ``x`` ``(B, in_dim)``; ``modality`` 0 = T1, 1 = T2."""
        if modality == 1 and self.t2_norm is not None:
            h = self.net[3](torch.relu(self.t2_norm(self.net[0](x))))
        else:
            h = self.net(x)
        return F.normalize(h, dim=1)


def build_encoder(encoder, volume_shape, *, patch_size=(14, 16, 14), embed_dim=384,
                  depth=12, n_heads=6, cnn_widths=(16, 32, 64)):
    """Build a one-channel encoder returning tokens ``(B, N, embed_dim)``.

    ``encoder='vit'`` uses ``patch_size``, ``depth`` and ``n_heads``;
    ``encoder='cnn'`` uses ``cnn_widths``.
    """
    if encoder == "vit":
        return VisionTransformer3d(volume_shape, patch_size=patch_size, embed_dim=embed_dim,
                                   depth=depth, n_heads=n_heads)
    if encoder == "cnn":
        return ConvEncoder3d(volume_shape, embed_dim=embed_dim, widths=cnn_widths)
    raise ValueError(f"encoder must be 'vit' or 'cnn'; got {encoder!r}.")


# --------------------------------------------------------------------------- MoCo
class MomentumContrast(nn.Module):
    """Query/key encoders, projection heads and key queues for paired T1/T2 MoCo.

    Parameters
    ----------
    volume_shape : tuple of 3 int
        Spatial shape of each (preprocessed) volume.
    encoder : {'vit', 'cnn'}, default='vit'
    patch_size, embed_dim, depth, n_heads, cnn_widths
        Encoder hyper-parameters, see :func:`build_encoder`.
    proj_dim : int, default=256
    shared_encoder : bool, default=True
        One encoder for T1 and T2 (reference); ``False`` gives each modality its own
        encoder (and key copy). The projection head is always shared.
    momentum : float, default=0.999
        EMA coefficient ``m`` of the key weights: ``k <- m k + (1 - m) q``.
    queue_size : int, default=65536
    queue_modalities : {'t2', 'both'}, default='t2'
    pooling : 'mean', 'grid' or tuple of 3 int, default='mean'
        How the token grid becomes one vector per volume: ``'mean'`` averages every
        token (reference); a grid such as ``(2, 2, 2)`` average-pools the token grid
        to that grid and concatenates the cells, keeping coarse spatial layout
        (pooled dimension ``embed_dim * prod(grid)``); ``'grid'`` keeps the token grid
        itself, average-pooled to at most ``MAX_GRID_CELLS`` cells per axis.
    projector_batchnorm : {'shared', 'per_modality'}, default='shared'
        BatchNorm of the projection head, see :class:`ProjectionHead`.

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.moco import MomentumContrast
    >>> moco = MomentumContrast((16, 16, 16), encoder="cnn", embed_dim=8,
    ...                         cnn_widths=(4,), proj_dim=4, queue_size=6)
    >>> x = torch.randn(3, 2, 16, 16, 16)
    >>> moco(x, output="pooled").shape, moco(x, output="tokens").shape
    (torch.Size([3, 2, 8]), torch.Size([3, 2, 512, 8]))
    """

    def __init__(self, volume_shape, encoder="vit", patch_size=(14, 16, 14), embed_dim=384,
                 depth=12, n_heads=6, cnn_widths=(16, 32, 64), proj_dim=256,
                 shared_encoder=True, momentum=0.999, queue_size=65536,
                 queue_modalities="t2", pooling="mean", projector_batchnorm="shared",
                 proj_hidden_dim=None):
        super().__init__()
        if queue_modalities not in QUEUE_MODALITIES:
            raise ValueError(f"queue_modalities must be one of {QUEUE_MODALITIES}; "
                             f"got {queue_modalities!r}.")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1; got {queue_size}.")

        def make():
            return build_encoder(encoder, volume_shape, patch_size=patch_size,
                                 embed_dim=embed_dim, depth=depth, n_heads=n_heads,
                                 cnn_widths=cnn_widths)

        self.shared_encoder = bool(shared_encoder)
        self.momentum = float(momentum)
        self.queue_modalities = queue_modalities
        names = ("shared",) if self.shared_encoder else ("t1", "t2")
        self.encoder_q = nn.ModuleDict({n: make() for n in names})
        first = next(iter(self.encoder_q.values()))
        self.grid = tuple(first.grid)
        if isinstance(pooling, str) and pooling == "mean":
            self.pooling, pooled_dim = "mean", embed_dim
        elif isinstance(pooling, str) and pooling == "grid":
            self.pooling = tuple(min(int(g), MAX_GRID_CELLS) for g in self.grid)
            pooled_dim = embed_dim * math.prod(self.pooling)
        elif (not isinstance(pooling, str) and len(pooling) == 3
              and all(int(g) >= 1 for g in pooling)):
            self.pooling = tuple(int(g) for g in pooling)
            pooled_dim = embed_dim * math.prod(self.pooling)
        else:
            raise ValueError(f"pooling must be 'mean', 'grid' or a grid of 3 positive ints "
                             f"such as (2, 2, 2); got {pooling!r}.")
        self.pooled_dim = pooled_dim
        self.projector_q = ProjectionHead(pooled_dim, proj_dim, batchnorm=projector_batchnorm,
                                          hidden_dim=proj_hidden_dim)
        # Biases that only add a per-channel constant in front of the projector's
        # BatchNorm (the projector's first Linear; the encoder's last conv or LayerNorm,
        # through the pooling and that Linear) have zero gradient up to roundoff, and
        # AdamW would scale that roundoff up to full-size steps: a random walk that moves
        # nothing in training mode but drags the BatchNorm running means (eval mode) and
        # makes runs that sum in another order (1 vs N processes) drift apart. Frozen at
        # their initial values (the function class is unchanged).
        for p in self._gauge_biases():
            p.requires_grad_(False)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        self.projector_k = copy.deepcopy(self.projector_q)
        for p in self.key_parameters():
            p.requires_grad_(False)
        self.embed_dim = embed_dim
        self.proj_dim = proj_dim
        self.n_tokens = first.n_tokens
        self.queue_size = int(queue_size)
        self.register_buffer("queue_t2", F.normalize(torch.randn(self.queue_size, proj_dim), dim=1))
        if queue_modalities == "both":
            self.register_buffer("queue_t1",
                                 F.normalize(torch.randn(self.queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # training-subject index of each queued key (-1: an initial random vector), so
        # that a subject's own stale keys are never its negatives
        self.register_buffer("queue_ids", torch.full((self.queue_size,), -1, dtype=torch.long))

    # -- parameters -------------------------------------------------------------------
    def _gauge_biases(self):
        out = [self.projector_q.net[0].bias]
        for enc in self.encoder_q.values():
            features = getattr(enc, "features", None)
            if features is not None and getattr(features[-1], "bias", None) is not None:
                out.append(features[-1].bias)
            norm = getattr(enc, "norm", None)
            if isinstance(norm, nn.LayerNorm) and norm.bias is not None:
                out.append(norm.bias)
        return out

    def query_parameters(self):
        """Trainable parameters: query encoder(s) and projection head."""
        return [*self.encoder_q.parameters(), *self.projector_q.parameters()]

    def key_parameters(self):
        """EMA parameters, in the same order as :meth:`query_parameters`."""
        return [*self.encoder_k.parameters(), *self.projector_k.parameters()]

    @torch.no_grad()
    def momentum_update(self):
        """``key <- m * key + (1 - m) * query`` for every key parameter."""
        torch._foreach_lerp_(self.key_parameters(),
                             [p.detach() for p in self.query_parameters()],
                             1.0 - self.momentum)

    # -- encoding ---------------------------------------------------------------------
    def tokens(self, x, key=False):
        """T1 and T2 tokens, each ``(B, N, embed_dim)``, of pairs ``x`` ``(B, 2, D, H, W)``."""
        encoders = self.encoder_k if key else self.encoder_q
        if self.shared_encoder:  # one pass over the 2B volumes
            t = encoders["shared"](torch.cat([x[:, 0:1], x[:, 1:2]], dim=0))
            return t.chunk(2, dim=0)
        return encoders["t1"](x[:, 0:1]), encoders["t2"](x[:, 1:2])

    def pool(self, t):
        """One vector per volume ``(B, pooled_dim)`` from tokens ``(B, N, embed_dim)``."""
        if self.pooling == "mean":
            return t.mean(dim=1)
        b, _, c = t.shape
        fmap = t.transpose(1, 2).reshape(b, c, *self.grid)
        return F.adaptive_avg_pool3d(fmap, self.pooling).flatten(1)

    def forward(self, x, output="projection"):
        """Query-side embeddings of pairs ``x`` ``(B, 2, D, H, W)``.

        ``output='pooled'`` -> ``(B, 2, pooled_dim)`` pooled tokens (:meth:`pool`);
        ``'projection'`` -> ``(B, 2, proj_dim)`` L2-normalised projections;
        ``'tokens'`` -> ``(B, 2, n_tokens, embed_dim)``.
        """
        t1, t2 = self.tokens(x)
        if output == "tokens":
            return torch.stack([t1, t2], dim=1)
        p1, p2 = self.pool(t1), self.pool(t2)
        if output == "pooled":
            return torch.stack([p1, p2], dim=1)
        if output == "projection":
            return torch.stack(self._project(self.projector_q, p1, p2), dim=1)
        raise ValueError(f"output must be 'pooled', 'projection' or 'tokens'; got {output!r}.")

    def forward_train(self, x):
        """One MoCo step's embeddings: queries ``q1, q2`` and keys ``k1, k2`` (B, p).

        The key weights are EMA-updated first, then the keys are computed without
        gradient.
        """
        t1, t2 = self.tokens(x)
        q1, q2 = self._project(self.projector_q, self.pool(t1), self.pool(t2))
        with torch.no_grad():
            self.momentum_update()
            s1, s2 = self.tokens(x, key=True)
            k1, k2 = self._project(self.projector_k, self.pool(s1), self.pool(s2))
        return q1, q2, k1, k2

    @staticmethod
    def _project(projector, p1, p2):
        """Project T1 and T2 in two calls, as the reference does, so that in training
        each modality's BatchNorm statistics come from its own batch.

        One batch of both modalities would be normalised with statistics dominated by
        the T1/T2 difference (z-scored T1 and T2 have opposite contrasts): the
        subject-to-subject variation then shrinks to a sliver of the normalised
        features, every projection of a modality points the same way, and training
        collapses (training loss rising to ``log(K + 1)``, in-batch validation loss at
        ``log(B)``) instead of learning. With ``projector_batchnorm='shared'`` the
        running statistics used in eval mode are, as in the reference, averaged over
        both modalities' batches; ``'per_modality'`` keeps them apart.
        """
        return projector(p1, modality=0), projector(p2, modality=1)

    # -- queue ------------------------------------------------------------------------
    def negatives(self):
        """Negatives for the T1 queries and for the T2 queries (each ``(K, p)``)."""
        if self.queue_modalities == "both":
            return self.queue_t2, self.queue_t1
        return self.queue_t2, self.queue_t2

    def false_negatives(self, ids):
        """``(B, K)`` mask of the queued keys that belong to the subjects ``ids`` (B,)."""
        return self.queue_ids[None, :] == ids.to(self.queue_ids.device)[:, None]

    @torch.no_grad()
    def enqueue(self, k1, k2, ids=None):
        """Write the batch's keys (and their subjects' ``ids``) into the queue(s)
        circularly (oldest overwritten)."""
        b = k2.shape[0]
        if ids is None:
            ids = torch.full((b,), -1, dtype=torch.long, device=k2.device)
        if b > self.queue_size:  # keep the last K keys
            k1, k2, ids = k1[-self.queue_size:], k2[-self.queue_size:], ids[-self.queue_size:]
            b = self.queue_size
        idx = (self.queue_ptr + torch.arange(b, device=k2.device)) % self.queue_size
        self.queue_ids[idx] = ids.to(self.queue_ids.device, torch.long)
        self.queue_t2[idx] = k2.detach().to(self.queue_t2.dtype)
        if self.queue_modalities == "both":
            self.queue_t1[idx] = k1.detach().to(self.queue_t1.dtype)
        self.queue_ptr.copy_((self.queue_ptr + b) % self.queue_size)
