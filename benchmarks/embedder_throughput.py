"""Throughput of MomentumContrastiveEmbedder vs a bare PyTorch loop (same process).

Measures subjects/s for ``fit`` (one epoch = every training subject once) and for
``transform``, for the estimator (skorch net, callbacks, validation off) and for a
hand-written PyTorch loop running the *same* ``MomentumContrast`` module, the same
``PairedVolumes`` data, DataLoader, batch size, optimiser, loss and queue update.
Runs alternate (estimator, bare, estimator, bare, ...) and the best of each is kept,
so background load hits both alike. Also compares the data loader alone with the
model step alone (on pre-loaded batches).

Goals: overhead ratio (bare rate / estimator rate) <= 1.05; loader >= 2x model.

Usage::

    python benchmarks/embedder_throughput.py                  # small CPU config
    python benchmarks/embedder_throughput.py --shape 64 64 64 --n 64 --repeats 3
    python benchmarks/embedder_throughput.py --encoder vit --shape 182 224 182 \\
        --embed-dim 384 --depth 12 --n-heads 6 --batch-size 4 --n 32   # reference, GPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from hcl_sklearn import MomentumContrastiveEmbedder, PairedVolumes
from hcl_sklearn.embed.contrastive import effective_queue_size
from hcl_sklearn.embed.nn.moco import MomentumContrast, SymmetricInfoNCE
from hcl_sklearn.embed.nn.runtime import autocast_context, resolve_device, seed_everything


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64, help="subjects")
    p.add_argument("--shape", type=int, nargs=3, default=(32, 32, 32))
    p.add_argument("--encoder", default="cnn", choices=("cnn", "vit"))
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--cnn-widths", type=int, nargs="+", default=(8, 16, 32))
    p.add_argument("--patch-size", type=int, nargs=3, default=(14, 16, 14))
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--n-heads", type=int, default=6)
    p.add_argument("--proj-dim", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    return p.parse_args()


def estimator_params(a):
    return dict(encoder=a.encoder, embed_dim=a.embed_dim, cnn_widths=tuple(a.cnn_widths),
                patch_size=tuple(a.patch_size), depth=a.depth, n_heads=a.n_heads,
                proj_dim=a.proj_dim, batch_size=a.batch_size, num_workers=a.num_workers,
                max_epochs=1, validation_fraction=None, lr_schedule="constant",
                device=a.device, random_state=0)


def moco_step(module, crit, opt, x, device):
    """One plain-PyTorch MoCo training step on batch ``x``; returns the loss."""
    opt.zero_grad()
    with autocast_context(device, "auto"):
        q1, q2, k1, k2 = module.forward_train(x)
        loss = crit(q1, q2, k1, k2, *module.negatives())
    loss.backward()
    module.enqueue(k1, k2)
    opt.step()
    return loss


def bare_fit(pairs, a, device, queue_size):
    """One epoch of MoCo in plain PyTorch: the reference point for the overhead.

    Timed like the estimator's ``fit``: from before the module is built to the end
    of the epoch (building the model and optimiser is part of both).
    """
    t0 = time.perf_counter()
    seed_everything(0)
    module = MomentumContrast(
        tuple(pairs.volume_shape), encoder=a.encoder, patch_size=tuple(a.patch_size),
        embed_dim=a.embed_dim, depth=a.depth, n_heads=a.n_heads,
        cnn_widths=tuple(a.cnn_widths), proj_dim=a.proj_dim, queue_size=queue_size,
        momentum=0.999).to(device)
    crit = SymmetricInfoNCE(0.07)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4,
                            weight_decay=0.01)
    loader = DataLoader(pairs, batch_size=a.batch_size, shuffle=True,
                        num_workers=a.num_workers, pin_memory=device.type == "cuda")
    module.train()
    for x in loader:
        loss = moco_step(module, crit, opt, x.to(device, non_blocking=True), device)
        float(loss.detach())  # the estimator reads the loss every batch too
    _sync(device)
    return time.perf_counter() - t0, module


def bare_transform(module, pairs, a, device):
    loader = DataLoader(pairs, batch_size=a.batch_size, num_workers=a.num_workers)
    module.eval()
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for x in loader:
            with autocast_context(device, "auto"):
                out.append(module(x.to(device), output="pooled").float().cpu().numpy())
    return time.perf_counter() - t0


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    a = parse()
    device = resolve_device(a.device)
    rng = np.random.default_rng(0)
    X = rng.random((a.n, 2, *a.shape), dtype=np.float32) + 0.01
    pairs = PairedVolumes(X, target_shape=None)
    K = effective_queue_size(65536, a.n, a.batch_size)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}"
          f", torch threads {torch.get_num_threads()})")
    print(f"config: encoder={a.encoder} volumes {a.n} x 2 x {tuple(a.shape)}, "
          f"batch {a.batch_size}, embed_dim {a.embed_dim}, queue {K}, "
          f"num_workers {a.num_workers}")

    est_fit, est_tr, bare_fit_t, bare_tr = [], [], [], []
    for _ in range(a.repeats):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        emb = MomentumContrastiveEmbedder(**estimator_params(a)).fit(X)
        _sync(device)
        est_fit.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        emb.transform(X)
        est_tr.append(time.perf_counter() - t0)
        t, module = bare_fit(pairs, a, device, K)
        bare_fit_t.append(t)
        bare_tr.append(bare_transform(module, pairs, a, device))

    def rate(ts):
        return a.n / min(ts)

    print(f"\nfit (1 epoch)   estimator {rate(est_fit):8.2f} subjects/s   "
          f"bare torch {rate(bare_fit_t):8.2f} subjects/s   "
          f"overhead ratio {min(est_fit) / min(bare_fit_t):.3f} (goal <= 1.05)")
    print(f"transform       estimator {rate(est_tr):8.2f} subjects/s   "
          f"bare torch {rate(bare_tr):8.2f} subjects/s   "
          f"overhead ratio {min(est_tr) / min(bare_tr):.3f} (goal <= 1.05)")

    # data loader alone vs model step alone
    loader = DataLoader(pairs, batch_size=a.batch_size, shuffle=True, num_workers=a.num_workers)
    t0 = time.perf_counter()
    batches = [x for x in loader]
    t_load = time.perf_counter() - t0
    crit = SymmetricInfoNCE(0.07)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    module.train()
    batches = [x.to(device) for x in batches]
    _sync(device)
    t0 = time.perf_counter()
    for x in batches:
        moco_step(module, crit, opt, x, device)
    _sync(device)
    t_model = time.perf_counter() - t0
    print(f"data loader     {a.n / t_load:8.2f} subjects/s   model step "
          f"{a.n / t_model:8.2f} subjects/s   loader/model {t_model / t_load:.2f} (goal >= 2)")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
