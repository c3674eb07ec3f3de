"""skorch callbacks of the neural embedders.

* :class:`NonFiniteLossGuard` stops training at the first NaN/inf loss with an error
  naming the epoch and the batch;
* :class:`RestoreBestValidLoss` keeps the weights of the epoch with the lowest
  validation loss and restores them when training ends (as the reference does);
* :class:`ValidationAlignment` logs cross-modal retrieval (top-1, recall@k, median
  rank) and linear CKA between the T1 and T2 validation embeddings every epoch,
  using :mod:`hcl_sklearn.evaluation.metrics`;
* :class:`MomentumSchedule` raises the EMA momentum of a MoCo key encoder from its
  base value to 1 along a half cosine (BYOL, MoCo v3);
* :class:`LinearWarmup` ramps the learning rate up linearly over the first steps,
  on top of whatever schedule sets it per epoch.

They are regular skorch callbacks: pass them to any ``NeuralNet`` whose validation
step returns, as ``y_pred``, embeddings of shape ``(batch, 2, d)`` (T1, T2).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from skorch.callbacks import Callback

from ..evaluation import metrics

logger = logging.getLogger(__name__)

__all__ = [
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "RestoreBestValidLoss",
    "ValidationAlignment",
    "MomentumSchedule",
    "LinearWarmup",
]


class _StepCallback(Callback):
    """Base of the per-step schedules: ``step_`` is the 0-based index of the training
    step that is starting. It is counted from the history at the first training batch
    (so it continues after a resume, whose history is restored at train begin) and
    incremented after each training batch."""

    def on_train_begin(self, net, **kwargs):
        self.step_ = None

    def _step(self, net):
        if getattr(self, "step_", None) is None:
            # batches of the history with a train_loss: finished training steps (the
            # current batch, recorded before on_batch_begin, has none yet)
            self.step_ = sum(1 for h in net.history for b in h["batches"]
                             if "train_loss" in b)
        return self.step_

    def on_batch_end(self, net, training=False, **kwargs):
        if training and getattr(self, "step_", None) is not None:
            self.step_ += 1


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names epoch and batch."""


class NonFiniteLossGuard(Callback):
    """Raise :class:`NonFiniteLossError` as soon as a batch loss is NaN or infinite.

    The message names the epoch (counting resumed epochs, 1-based), the batch within
    the epoch (1-based), whether it was a training or validation batch, and the usual
    remedies.

    Examples
    --------
    >>> from hcl_sklearn.embed.callbacks import NonFiniteLossGuard
    >>> NonFiniteLossGuard()
    <NonFiniteLossGuard>
    """

    def __repr__(self):
        return "<NonFiniteLossGuard>"

    def on_epoch_begin(self, net, **kwargs):
        self.batches_ = {True: 0, False: 0}

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if not hasattr(self, "batches_"):
            self.batches_ = {True: 0, False: 0}
        self.batches_[training] += 1
        if loss is None:
            return
        value = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
        if math.isfinite(value):
            return
        kind = "training" if training else "validation"
        raise NonFiniteLossError(
            f"non-finite {kind} loss ({value}) at epoch {len(net.history)}, {kind} batch "
            f"{self.batches_[training]}. Training was stopped. Lower the learning rate, "
            "use precision='fp32', raise the temperature, or check the input volumes."
        )


class RestoreBestValidLoss(Callback):
    """Keep the module state of the epoch with the lowest ``valid_loss``; restore it at the end.

    The state (weights and buffers, e.g. the MoCo queue) is copied in memory, so no
    file is written. Without a validation split nothing is restored. After training,
    ``best_epoch_`` and ``best_valid_loss_`` say which epoch was kept.

    Examples
    --------
    >>> from hcl_sklearn.embed.callbacks import RestoreBestValidLoss
    >>> RestoreBestValidLoss()
    <RestoreBestValidLoss>
    """

    def __repr__(self):
        return "<RestoreBestValidLoss>"

    def on_train_begin(self, net, **kwargs):
        self.best_valid_loss_ = math.inf
        self.best_epoch_ = None
        self._state = None

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1].get("valid_loss")
        if loss is None or not loss < self.best_valid_loss_:
            return
        self.best_valid_loss_ = float(loss)
        self.best_epoch_ = int(net.history[-1]["epoch"])
        self._state = {k: v.detach().to("cpu", copy=True)
                       for k, v in net.module_.state_dict().items()}

    def on_train_end(self, net, **kwargs):
        if self._state is not None:
            net.module_.load_state_dict(self._state)
            logger.info("restored the weights of epoch %d (best valid_loss %.4f)",
                        self.best_epoch_, self.best_valid_loss_)
        self._state = None  # do not keep a second copy of the model in the net

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_state"] = None
        return state


class ValidationAlignment(Callback):
    """Log T1/T2 alignment of the validation embeddings in the history each epoch.

    Collects the ``y_pred`` of every validation batch (embeddings of shape
    ``(batch, 2, d)``) and records, with :func:`hcl_sklearn.evaluation.metrics.retrieval_scores`
    and :func:`hcl_sklearn.evaluation.metrics.linear_cka`: ``valid_top1``, ``valid_recall@k``
    for each ``k`` in ``ks``, ``valid_median_rank`` and ``valid_cka``. Needs at least
    two validation subjects.

    Parameters
    ----------
    ks : tuple of int, default=(5, 10)
        Recall cut-offs to log (top-1 is always logged).

    Examples
    --------
    >>> from hcl_sklearn.embed.callbacks import ValidationAlignment
    >>> ValidationAlignment(ks=(5,)).ks
    (5,)
    """

    def __init__(self, ks=(5, 10)):
        self.ks = ks

    def on_epoch_begin(self, net, **kwargs):
        self._blocks = []

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        if training or y_pred is None or not torch.is_tensor(y_pred) or y_pred.ndim != 3:
            return
        self._blocks.append(y_pred.detach().float().cpu().numpy())

    def on_epoch_end(self, net, **kwargs):
        blocks, self._blocks = getattr(self, "_blocks", []), []
        if not blocks:
            return
        z = np.concatenate(blocks)
        if len(z) < 2:
            return
        a, b = z[:, 0], z[:, 1]
        scores = metrics.retrieval_scores(a, b, ks=(1, *self.ks))
        net.history.record("valid_top1", scores["top1"])
        for k in self.ks:
            net.history.record(f"valid_recall@{k}", scores[f"recall@{k}"])
        net.history.record("valid_median_rank", scores["median_rank"])
        net.history.record("valid_cka", metrics.linear_cka(a, b))

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_blocks", None)
        return state


class EpochCheckpoint(Callback):
    """Save everything training needs at the end of every epoch; resume from it.

    ``dirname/checkpoint.pt`` holds the module's state (query and EMA key encoders,
    projectors, the MoCo queue and its pointer), the optimizer's and the LR scheduler's
    states, the history, the best-epoch state of :class:`RestoreBestValidLoss`, and the
    torch, numpy and Python RNG states. It is written under a temporary name, flushed and
    renamed, so a kill (even SIGKILL, mid-epoch) leaves the last complete epoch. With
    ``resume`` set (by :meth:`MomentumContrastiveEmbedder.fit`), ``on_train_begin`` puts all
    of it back after the other callbacks have set up, so the remaining epochs draw the same
    batches and augmentations as an uninterrupted run.

    Examples
    --------
    >>> from hcl_sklearn.embed.callbacks import EpochCheckpoint
    >>> EpochCheckpoint("ckpt")
    <EpochCheckpoint ckpt>
    """

    FILENAME = "checkpoint.pt"

    def __init__(self, dirname, resume=None, meta=None):
        self.dirname = dirname
        self.resume = resume
        self.meta = meta

    def __repr__(self):
        return f"<EpochCheckpoint {self.dirname}>"

    @classmethod
    def load(cls, dirname):
        """The saved state of ``dirname`` (a dict), or None when there is none."""
        import os

        path = os.path.join(str(dirname), cls.FILENAME)
        if not os.path.exists(path):
            return None
        return torch.load(path, map_location="cpu", weights_only=False)

    def on_train_begin(self, net, **kwargs):
        state, self.resume = self.resume, None
        if state is None:
            return
        import random

        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        cbs = dict(net.callbacks_)
        sched = cbs.get("lr_scheduler")
        if sched is not None and state.get("lr_scheduler") is not None:
            sched.lr_scheduler_.load_state_dict(state["lr_scheduler"])
        best = cbs.get("restore_best")
        if best is not None and state.get("restore_best") is not None:
            best.__dict__.update(state["restore_best"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])

    def on_epoch_end(self, net, **kwargs):
        import os
        import random

        from .nn.distributed import world

        if world()[0] != 0:  # data-parallel: every rank holds the same state; rank 0 writes
            return
        cbs = dict(net.callbacks_)
        sched = cbs.get("lr_scheduler")
        best = cbs.get("restore_best")
        state = {
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "lr_scheduler": (None if sched is None or not hasattr(sched, "lr_scheduler_")
                             else sched.lr_scheduler_.state_dict()),
            "restore_best": None if best is None else dict(best.__dict__),
            "history": net.history.to_list(),
            "meta": self.meta,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate()},
        }
        os.makedirs(str(self.dirname), exist_ok=True)
        path = os.path.join(str(self.dirname), self.FILENAME)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class MomentumSchedule(_StepCallback):
    """Raise the EMA momentum of the key encoder from ``base`` to 1 along a half cosine.

    Before training step ``k`` of ``total_steps`` the module's ``momentum`` is set to
    ``1 - (1 - base) * (cos(pi * k / total_steps) + 1) / 2`` (BYOL, Grill et al. 2020;
    MoCo v3, Chen et al. 2021): early on the keys follow the queries quickly, late in
    training they average over many steps. The step is counted from the history, so
    the schedule continues after a resume.

    Parameters
    ----------
    base : float
        Momentum at the first step.
    total_steps : int
        Training steps of the whole fit (``max_epochs * batches per epoch``).

    Examples
    --------
    >>> from hcl_sklearn.embed.callbacks import MomentumSchedule
    >>> cb = MomentumSchedule(0.9, total_steps=100)
    >>> round(cb.momentum_at(0), 3), round(cb.momentum_at(50), 3), cb.momentum_at(100)
    (0.9, 0.95, 1.0)
    """

    def __init__(self, base, total_steps):
        self.base = base
        self.total_steps = total_steps

    def momentum_at(self, step):
        """The momentum before training step ``step`` (0-based)."""
        frac = min(max(step / max(int(self.total_steps), 1), 0.0), 1.0)
        return 1.0 - (1.0 - float(self.base)) * (math.cos(math.pi * frac) + 1.0) / 2.0

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            net.module_.momentum = self.momentum_at(self._step(net))

    def on_train_end(self, net, **kwargs):
        net.module_.momentum = float(self.base)  # the module's parameter, as built
        self.step_ = None


class LinearWarmup(_StepCallback):
    """Scale the learning rate by ``(k + 1) / warmup_steps`` for the first training steps.

    The optimizer's rate set by the epoch schedule (constant, cosine) is multiplied
    during step ``k < warmup_steps`` and restored after it, so the schedule is
    untouched (Goyal et al. 2017; MoCo v3). The step is counted from the history.

    Parameters
    ----------
    warmup_steps : int
        Steps of the ramp; 0 turns it off.

    Examples
    --------
    >>> from hcl_sklearn.embed.callbacks import LinearWarmup
    >>> LinearWarmup(10).factor_at(0), LinearWarmup(10).factor_at(9)
    (0.1, 1.0)
    """

    def __init__(self, warmup_steps):
        self.warmup_steps = warmup_steps

    def factor_at(self, step):
        """The factor of the rate during training step ``step`` (0-based)."""
        n = int(self.warmup_steps)
        return 1.0 if step >= n else (step + 1) / n

    def on_batch_begin(self, net, training=False, **kwargs):
        self._saved = None
        if not training:
            return
        f = self.factor_at(self._step(net))
        if f < 1.0:
            groups = net.optimizer_.param_groups
            self._saved = [g["lr"] for g in groups]
            for g, lr in zip(groups, self._saved):
                g["lr"] = lr * f

    def on_batch_end(self, net, training=False, **kwargs):
        saved, self._saved = getattr(self, "_saved", None), None
        if saved is not None:
            for g, lr in zip(net.optimizer_.param_groups, saved):
                g["lr"] = lr
        super().on_batch_end(net, training=training, **kwargs)
