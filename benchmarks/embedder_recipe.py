"""Ablation of the contrastive training recipe on the simulated cohort.

Fits ``MomentumContrastiveEmbedder(encoder='cnn')`` on the training split of
``make_paired_cohort`` with a base recipe, then with each option of the recipe switched
back to the reference's value, one at a time, and prints held-out cross-modal retrieval
(from ``output='projection'``) and the fit time. Reference rows: the random-init encoder
and a linear cross-modal model (per-modality PCA on the z-scored volumes, then CCA), on
the same split.

Usage::

    python benchmarks/embedder_recipe.py                  # 400 subjects, 320 train, 20 epochs
    python benchmarks/embedder_recipe.py --seeds 0 1 2    # the base recipe over seeds too
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

BASE = {
    "encoder": "cnn", "cnn_widths": (8, 16), "embed_dim": 16, "proj_dim": 32,
    "pooling": "grid", "proj_hidden_dim": 256, "projector_batchnorm": "per_modality",
    "queue_modalities": "both", "augment": "intensity", "temperature": 0.1,
    "momentum": 0.9, "lr": 1e-3, "lr_schedule": "constant", "batch_size": 16,
}
#: each option switched back to the reference implementation's value
REFERENCE_VALUES = {
    "augment": "none", "pooling": "mean", "temperature": 0.07, "momentum": 0.99,
    "projector_batchnorm": "shared", "queue_modalities": "t2", "lr": 1e-4,
    "lr_schedule": "cosine_warm_restarts", "batch_size": 4,
}


def zscore(X):
    """The reference preprocessing: z-score each volume on its non-zero voxels."""
    from hcl_sklearn.volumes import PairedVolumes

    return PairedVolumes(X, target_shape=None).to_array()


def pca_cca_retrieval(X, tr, te, n_pca=64, n_cca=16):
    from sklearn.cross_decomposition import CCA
    from sklearn.decomposition import PCA

    from hcl_sklearn.metrics import retrieval_scores

    Z = zscore(X).reshape(len(X), 2, -1)
    n_pca = min(n_pca, len(tr) - 1)
    n_cca = min(n_cca, n_pca)
    parts = []
    for c in range(2):
        pca = PCA(n_pca, random_state=0).fit(Z[tr, c])
        parts.append(pca.transform(Z[:, c]))
    cca = CCA(n_cca, max_iter=2000).fit(parts[0][tr], parts[1][tr])
    a, b = cca.transform(parts[0][te], parts[1][te])
    return retrieval_scores(a, b, ks=(1, 10))


def fit_and_score(X, tr, te, params, epochs, seed):
    from hcl_sklearn import MomentumContrastiveEmbedder
    from hcl_sklearn.metrics import retrieval_scores

    params = dict(params)
    if params.get("pooling") == "grid":       # the full token grid of this volume size
        from hcl_sklearn.nn.moco import MomentumContrast

        probe = MomentumContrast(volume_shape=X.shape[2:], encoder="cnn",
                                 embed_dim=params["embed_dim"],
                                 cnn_widths=params["cnn_widths"], proj_dim=4)
        params["pooling"] = probe.grid
    start = time.perf_counter()
    emb = MomentumContrastiveEmbedder(**params, max_epochs=epochs, random_state=seed)
    emb.fit(X[tr])
    seconds = time.perf_counter() - start
    Z = emb.set_params(output="projection").transform(X[te])
    d = Z.shape[1] // 2
    return retrieval_scores(Z[:, :d], Z[:, d:], ks=(1, 10)), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=400)
    parser.add_argument("--train", type=float, default=0.8)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 28, 24))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cohort-seed", type=int, default=0)
    args = parser.parse_args(argv)

    from hcl_sklearn.datasets import make_paired_cohort

    bunch = make_paired_cohort(args.subjects, tuple(args.shape), random_state=args.cohort_seed)
    X = np.asarray(bunch.X, np.float32)
    n_tr = int(round(args.train * len(X)))
    tr, te = np.arange(n_tr), np.arange(n_tr, len(X))
    print(f"{len(X)} subjects at {tuple(args.shape)}: {len(tr)} train, {len(te)} held out "
          f"(chance top-1 {1 / len(te):.4f}, chance mean rank {(len(te) + 1) / 2}); "
          f"{args.epochs} epochs")
    print(f"base recipe: {json.dumps(BASE)}\n")
    print("| run | seed | top-1 | recall@10 | mean rank | fit s |")
    print("|---|---|---|---|---|---|")
    lin = pca_cca_retrieval(X, tr, te)
    print(f"| linear: PCA(64) -> CCA(16), z-scored voxels | - | {lin['top1']:.3f} | "
          f"{lin['recall@10']:.3f} | {lin['mean_rank']:.1f} | - |", flush=True)
    rows = [("base", s, BASE, args.epochs) for s in args.seeds]
    rows.append(("random init (0 epochs)", args.seeds[0], BASE, 0))
    rows += [(f"{k}={v!r}", args.seeds[0], {**BASE, k: v}, args.epochs)
             for k, v in REFERENCE_VALUES.items()]
    for name, seed, params, epochs in rows:
        r, sec = fit_and_score(X, tr, te, params, epochs, seed)
        print(f"| {name} | {seed} | {r['top1']:.3f} | {r['recall@10']:.3f} | "
              f"{r['mean_rank']:.1f} | {sec:.0f} |", flush=True)


if __name__ == "__main__":
    main()
