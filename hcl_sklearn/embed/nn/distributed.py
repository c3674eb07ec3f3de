"""Data-parallel training on PyTorch's own engine (``torchrun``, ``torch.distributed``).

Inside a ``torchrun`` job (``WORLD_SIZE`` set in the environment), ``fit`` of the
contrastive embedder runs data-parallel with the same estimator API:

- the process group is set up from torchrun's environment (gloo on CPU, NCCL on CUDA);
- every rank draws the same permutation of the training subjects each epoch and takes its
  contiguous share of each *global* batch (``batch_size`` is the global batch and must be
  a multiple of the number of ranks; the last incomplete global batch is dropped);
- the gradients are averaged over the ranks after every backward pass, as
  DistributedDataParallel's all-reduce does (each rank's loss is the mean over its share,
  the shares are equal, so the average is the gradient of the global batch's loss);
- the projector's BatchNorm normalises with the statistics of the whole global batch
  (sums all-reduced with autograd), as a single process would;
- the keys of all ranks are all-gathered, in rank order, before they enter the queue, as
  the reference MoCo does, so every rank holds the same queue.

Why not ``DistributedDataParallel`` itself: DDP hooks the module's ``forward``, while the
MoCo step calls several methods of the module (queries, EMA update, keys, queue); the
explicit all-reduce after backward is the same arithmetic without the wrapper. Why not
Accelerate (skorch's ``AccelerateMixin``): it adds a dependency and its own device and
precision handling on top of the package's, for the same collectives.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["world", "setup_from_env", "in_torchrun", "all_gather_cat", "average_gradients",
           "global_batch_moments", "ShardedEpochSampler"]


def in_torchrun():
    """True inside a torchrun job (even with one process)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup_from_env(device):
    """Initialise the default process group from torchrun's environment (once)."""
    if in_torchrun() and not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if torch.device(device).type == "cuda":  # pragma: no cover - GPU jobs
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def world():
    """``(rank, world_size)``: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_cat(t):
    """Concatenate ``t`` of every rank along dim 0, in rank order (no gradient)."""
    rank, size = world()
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(params):
    """Average the gradients of ``params`` over the ranks (sum, then / world size)."""
    rank, size = world()
    if size == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= size


def global_batch_moments(x):
    """Mean and biased variance over the global batch of ``x`` (B_local, C), with
    gradients flowing through the all-reduce; and the global batch size."""
    from torch.distributed.nn.functional import all_reduce

    n = torch.tensor([x.shape[0]], dtype=torch.float64, device=x.device)
    dist.all_reduce(n)
    n = float(n.item())
    s = all_reduce(x.sum(dim=0))
    ss = all_reduce((x * x).sum(dim=0))
    mean = s / n
    var = ss / n - mean * mean
    return mean, var, int(n)


class ShardedEpochSampler(torch.utils.data.Sampler):
    """Indices of this rank's share of every global batch of one epoch.

    Every rank draws the same permutation (a generator seeded by ``seed`` and the epoch,
    set by :meth:`set_epoch`); global batch ``k`` is ``perm[k B:(k + 1) B]`` and rank
    ``r`` takes its ``r``-th contiguous slice of ``B / world`` indices.
    """

    def __init__(self, n, global_batch, seed, rank, world_size):
        if global_batch % world_size:
            raise ValueError(f"batch_size={global_batch} (the global batch) must be a "
                             f"multiple of the {world_size} processes.")
        if n < global_batch:
            raise ValueError(f"{n} training subjects are fewer than one global batch of "
                             f"{global_batch}; lower batch_size.")
        self.n, self.global_batch, self.seed = int(n), int(global_batch), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.local = self.global_batch // self.world_size
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return (self.n // self.global_batch) * self.local

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        out = []
        for k in range(self.n // self.global_batch):
            start = k * self.global_batch + self.rank * self.local
            out.extend(perm[start:start + self.local])
        return iter(out)
