"""Ablation of the contrastive training recipe on the simulated cohort.

Fits ``MomentumContrastiveEmbedder(encoder='cnn')`` on the training split of
``make_paired_cohort`` with a base recipe, then with each option of the recipe switched
back to the reference's value, one at a time, and prints held-out cross-modal retrieval
(from ``output='projection'``), the held-out ridge R² of the shared heritable factors
(from the token grid -> StandardScaler -> PCA(16) per modality, the reference protocol;
mean and worst factor) and the fit time. Reference rows: the random-init encoder, PCA(16)
per modality on the z-scored volumes, and a linear cross-modal model (per-modality PCA on
the z-scored volumes, then CCA), on the same split.

Usage::

    python benchmarks/embedder_recipe.py                  # 400 subjects, 320 train, 20 epochs
    python benchmarks/embedder_recipe.py --seeds 0 1 2    # the base recipe over seeds too
    python benchmarks/embedder_recipe.py --realism realistic --only-base
    python benchmarks/embedder_recipe.py --only-base --stage-features   # earlier layers
    python benchmarks/embedder_recipe.py --only-base --params '{"cnn_widths": [16]}'
    python benchmarks/embedder_recipe.py --subjects 1000 --epochs 80 --split demo \
        --schedule constant --options cnn_widths --seeds 0 1   # at the demo's scale
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np

#: the estimator's defaults (MomentumContrastiveEmbedder(encoder='cnn'))
BASE = {
    "encoder": "cnn", "cnn_widths": (8, 16), "embed_dim": 24, "proj_dim": 32,
    "pooling": "grid", "proj_hidden_dim": 256, "projector_batchnorm": "per_modality",
    "queue_modalities": "both", "augment": "intensity", "temperature": 0.1,
    "momentum": 0.9, "momentum_schedule": "constant", "lr": 1e-3,
    "lr_schedule": "cosine_warm_restarts", "warmup_epochs": 0, "batch_size": 16,
}
#: each option switched back to the reference implementation's value (the reference's
#: schedule is the default's; the constant rate is the demo's)
REFERENCE_VALUES = {
    "augment": "none", "pooling": "mean", "temperature": 0.07, "momentum": 0.99,
    "projector_batchnorm": "shared", "queue_modalities": "t2", "lr": 1e-4,
    "proj_hidden_dim": None, "batch_size": 4, "lr_schedule": "constant",
}
#: other values tried against the base (not the reference's): a wider CNN, a higher
#: temperature, wider tokens, a momentum schedule and a learning-rate warm-up
OTHER_VALUES = {"cnn_widths": (16, 32), "temperature": 0.2, "embed_dim": 64,
                "momentum_schedule": "cosine", "warmup_epochs": 2}


def zscore(X):
    """The reference preprocessing: z-score each volume on its non-zero voxels."""
    from hcl_sklearn.data.volumes import PairedVolumes

    return PairedVolumes(X, target_shape=None).to_array()


def _voxel_table(Z, pool=1):
    """z-scored volumes ``Z`` (n, 2, D, H, W), average-pooled by ``pool`` per axis (the
    CNN's token grid is the volume pooled by 2 per stage), as a ``t1_…``/``t2_…`` table."""
    import pandas as pd

    if pool > 1:
        import torch

        Z = torch.nn.functional.avg_pool3d(torch.from_numpy(Z), pool, ceil_mode=True).numpy()
    Z = Z.reshape(len(Z), 2, -1)
    p = Z.shape[2]
    return pd.DataFrame(Z.reshape(len(Z), -1),
                        columns=[f"t1_v{i}" for i in range(p)] + [f"t2_v{i}" for i in range(p)])


def shared_factors(bunch):
    """The planted shared heritable factors (seen by both modalities) of a simulated
    cohort, one column each, rows in subject order."""
    factors = bunch.truth.factors
    names = [f for f in factors.index
             if factors.loc[f, "kind"] == "heritable" and len(factors.loc[f, "modalities"]) > 1]
    return bunch.truth.factor_values[names].reset_index(drop=True)


def shared_r2(features, shared, tr, te, n_components=16):
    """Mean and worst held-out ridge R² of the shared heritable factors from
    StandardScaler -> PCA(n_components) per modality of ``features``."""
    from hcl_sklearn.evaluation import factor_recovery
    from hcl_sklearn.embed.reduction import ModalityPCA

    pcs = ModalityPCA(n_components=n_components).fit(features.iloc[tr]).transform(features)
    r2 = factor_recovery(pcs, shared, tr, te)["r2"]
    return r2.mean(), r2.min()


def pca_cca_retrieval(vox, tr, te, n_pca=64, n_cca=16):
    from hcl_sklearn.evaluation.metrics import retrieval_scores
    from hcl_sklearn.embed.reduction import CrossModalCCA

    cca = CrossModalCCA(n_pca=min(n_pca, len(tr) - 1), n_components=n_cca).fit(vox.iloc[tr])
    Z = cca.transform(vox.iloc[te]).to_numpy()
    d = Z.shape[1] // 2
    return retrieval_scores(Z[:, :d], Z[:, d:], ks=(1, 10)), cca.transform(vox)


def stage_table(emb, X, stage=1):
    """The query CNN's feature map after stage ``stage`` (its second ReLU) for every
    subject of ``X``, as a ``t1_…``/``t2_…`` table (read with forward hooks while
    ``transform`` runs)."""
    import pandas as pd

    encoders = emb.net_.module_.encoder_q
    maps, hooks = {k: [] for k in encoders}, []
    def keep(k):  # copy: the output's memory is reused by the next batch
        return lambda mod, inp, out: maps[k].append(out.detach().flatten(1).cpu().numpy().copy())

    for k, enc in encoders.items():
        hooks.append(enc.features[6 * stage - 1].register_forward_hook(keep(k)))
    try:
        emb.set_params(output="pooled").transform(X)
    finally:
        for h in hooks:
            h.remove()
    if "shared" in encoders:  # one pass over [T1 batch; T2 batch]
        parts = maps["shared"]
        A = [np.concatenate([b[: len(b) // 2] for b in parts]),
             np.concatenate([b[len(b) // 2:] for b in parts])]
    else:
        A = [np.concatenate(maps["t1"]), np.concatenate(maps["t2"])]
    p = A[0].shape[1]
    return pd.DataFrame(np.hstack(A), columns=[f"t1_f{i}" for i in range(p)]
                        + [f"t2_f{i}" for i in range(p)])


def fit_and_score(X, tr, te, params, epochs, seed, shared, stage_features=False):
    import pandas as pd

    from hcl_sklearn import MomentumContrastiveEmbedder
    from hcl_sklearn.embed.contrastive import ConfigurationWarning
    from hcl_sklearn.evaluation.metrics import retrieval_scores

    params = dict(params)
    if params.get("pooling") == "grid":       # the full token grid of this volume size
        from hcl_sklearn.embed.nn.moco import MomentumContrast

        arch = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()
                if k in ("encoder", "embed_dim", "cnn_widths", "patch_size", "depth",
                         "n_heads")}
        params["pooling"] = MomentumContrast(volume_shape=X.shape[2:], proj_dim=4,
                                             **arch).grid
    start = time.perf_counter()
    emb = MomentumContrastiveEmbedder(**params, max_epochs=epochs, random_state=seed)
    with warnings.catch_warnings():  # the default queue is clipped to the 288 subjects
        warnings.simplefilter("ignore", ConfigurationWarning)
        emb.fit(X[tr])
    seconds = time.perf_counter() - start
    # the encoder's token output (the reference protocol); the same numbers as the pooled
    # output wherever the projector sees the full grid (the base), finer where it does not
    T = emb.set_params(output="tokens").transform(X)    # a memmap in the temp folder
    tokens = pd.DataFrame(np.array(T), columns=emb.get_feature_names_out())   # a copy
    os.remove(T.filename)
    extra = {}
    if stage_features:  # earlier layers, alone and beside the tokens (a hypercolumn)
        s1 = stage_table(emb, X)
        hyper = pd.concat([s1.filter(like="t1_"), tokens.filter(like="t1_"),
                           s1.filter(like="t2_"), tokens.filter(like="t2_")], axis=1)
        extra = {"first-stage feature map": shared_r2(s1, shared, tr, te),
                 "hypercolumn (first stage + tokens)": shared_r2(hyper, shared, tr, te)}
    Z = emb.set_params(output="projection").transform(X[te])
    d = Z.shape[1] // 2
    return (retrieval_scores(Z[:, :d], Z[:, d:], ks=(1, 10)), seconds,
            shared_r2(tokens, shared, tr, te), extra)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=400)
    parser.add_argument("--train", type=float, default=0.8)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 28, 24))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cohort-seed", type=int, default=0)
    parser.add_argument("--realism", default="basic", choices=["basic", "realistic"])
    parser.add_argument("--only-base", action="store_true",
                        help="the reference rows and the base recipe only (no ablation)")
    parser.add_argument("--options", nargs="+", default=None, metavar="NAME",
                        help="ablate only these options (e.g. cnn_widths temperature), "
                             "each over every --seeds")
    parser.add_argument("--pooled-voxels", type=int, nargs="*", default=[], metavar="K",
                        help="reference rows: PCA(16) per modality of the z-scored volumes "
                             "average-pooled by K per axis (e.g. 2 4)")
    parser.add_argument("--split", default="first", choices=["first", "demo"],
                        help="'first': the first --train share trains; 'demo': hcl demo's "
                             "random split (numpy default_rng(cohort seed) permutation)")
    parser.add_argument("--schedule", default=None, choices=["constant", "cosine_warm_restarts"],
                        help="lr_schedule of the base recipe (the demo's: constant)")
    parser.add_argument("--stage-features", action="store_true",
                        help="rows for the base recipe and the random init: R² from the "
                             "first CNN stage's feature map, and from it beside the tokens")
    parser.add_argument("--params", type=json.loads, action="append", default=[],
                        metavar="JSON",
                        help="an extra row: the base recipe with these estimator parameters, "
                             "over every --seeds (repeatable), e.g. '{\"encoder\": \"vit\", "
                             "\"patch_size\": [4, 4, 4], \"depth\": 4, \"n_heads\": 4, "
                             "\"embed_dim\": 48}'")
    args = parser.parse_args(argv)
    values = list(REFERENCE_VALUES.items()) + list(OTHER_VALUES.items())
    unknown = set(args.options or ()) - {k for k, _ in values}
    if unknown:
        parser.error(f"unknown options {sorted(unknown)}; choose from "
                     f"{sorted({k for k, _ in values})}")

    from hcl_sklearn.datasets import make_paired_cohort

    bunch = make_paired_cohort(args.subjects, tuple(args.shape), realism=args.realism,
                               random_state=args.cohort_seed)
    X = np.asarray(bunch.X, np.float32)
    n_tr = int(round(args.train * len(X)))
    tr, te = np.arange(n_tr), np.arange(n_tr, len(X))
    if args.split == "demo":
        from hcl_sklearn.app.demo.stages import demo_split

        tr, te = demo_split(len(X), 1 - args.train, args.cohort_seed)
    print(f"{len(X)} subjects at {tuple(args.shape)}: {len(tr)} train, {len(te)} held out "
          f"(chance top-1 {1 / len(te):.4f}, chance mean rank {(len(te) + 1) / 2}); "
          f"{args.epochs} epochs")
    base = dict(BASE) if args.schedule is None else {**BASE, "lr_schedule": args.schedule}
    print(f"base recipe: {json.dumps(base)}\n")
    shared = shared_factors(bunch)
    names = list(shared.columns)
    print(f"shared heritable factors: {names}")
    print("| run | seed | top-1 | recall@10 | mean rank | shared R² mean / min | fit s |")
    print("|---|---|---|---|---|---|---|")
    Z = zscore(X)  # once, for every voxel reference row
    vox = _voxel_table(Z)
    lin, variates = pca_cca_retrieval(vox, tr, te)
    lin_r2 = factor_recovery_table(variates, shared, tr, te)
    vox_r2 = shared_r2(vox, shared, tr, te)
    print(f"| linear: PCA(64) -> CCA(16), z-scored voxels | - | {lin['top1']:.3f} | "
          f"{lin['recall@10']:.3f} | {lin['mean_rank']:.1f} | {lin_r2[0]:.3f} / "
          f"{lin_r2[1]:.3f} | - |", flush=True)
    print(f"| PCA(16) per modality, z-scored voxels | - | - | - | - | {vox_r2[0]:.3f} / "
          f"{vox_r2[1]:.3f} | - |", flush=True)
    for k in args.pooled_voxels:
        r2 = shared_r2(_voxel_table(Z, pool=k), shared, tr, te)
        print(f"| PCA(16) per modality, z-scored voxels pooled {k}x{k}x{k} | - | - | - | - | "
              f"{r2[0]:.3f} / {r2[1]:.3f} | - |", flush=True)
    rows = [("base", s, base, args.epochs) for s in args.seeds]
    if args.options is None:
        rows.append(("random init (0 epochs)", args.seeds[0], base, 0))
    if not args.only_base:
        rows += [(f"{k}={v!r}", s, {**base, k: v}, args.epochs)
                 for k, v in values if args.options is None or k in args.options
                 for s in (args.seeds if args.options else args.seeds[:1])]
    rows += [(json.dumps(extra), s, {**base, **extra}, args.epochs)
             for extra in args.params for s in args.seeds]
    for name, seed, params, epochs in rows:
        r, sec, r2, extra = fit_and_score(X, tr, te, params, epochs, seed, shared,
                                          args.stage_features and params is base)
        print(f"| {name} | {seed} | {r['top1']:.3f} | {r['recall@10']:.3f} | "
              f"{r['mean_rank']:.1f} | {r2[0]:.3f} / {r2[1]:.3f} | {sec:.0f} |", flush=True)
        for what, (mean, worst) in extra.items():
            print(f"| {name}: {what} | {seed} | - | - | - | {mean:.3f} / {worst:.3f} | - |",
                  flush=True)


def factor_recovery_table(variates, shared, tr, te):
    from hcl_sklearn.evaluation import factor_recovery

    r2 = factor_recovery(variates, shared, tr, te)["r2"]
    return r2.mean(), r2.min()


if __name__ == "__main__":
    main()
