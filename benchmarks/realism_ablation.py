"""Which realistic property stops the contrastive embedder from learning?

The simulator's ``realism='realistic'`` level adds several published properties of real
acquisitions at once (docs/simulator.md). On it the contrastive recipe that learns on the
``'basic'`` cohort learns nothing cross-modal. This script separates them: it fits the
base recipe of ``embedder_recipe.py`` (same split, epochs and readout) on cohorts that add
one property to ``'basic'`` at a time, and that remove one from ``'realistic'`` at a time,
and prints, beside each, the linear cross-modal reference (PCA(64) -> CCA(16) on the
z-scored volumes) and PCA on the voxels. ``--bias-correction`` adds, for each cohort, the
same fits after a parametric bias-field correction of every volume (a least-squares
quadratic in log intensity over the brain voxels, as in Styner et al. 2000, IEEE TMI
19:153; the simulator's field is the exponential of a random quadratic, so this is the
most favourable correction there is, an upper bound on what bias correction can buy).

The simulator is not changed by what this script shows; it only asks which property the
recipe fails on.

Usage::

    python benchmarks/realism_ablation.py                     # both directions, ~8 min
    python benchmarks/realism_ablation.py --only add --bias-correction
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import embedder_recipe as er

#: property -> the settings of ``REALISM`` it comprises
PROPERTIES = {
    "sites": ("n_sites", "site_gain_sd"),
    "bias field": ("bias_strength",),
    "T2 noise": ("noise_level",),
    "T2 misregistration": ("t2_shift_mm",),
    "T2 mask": ("t2_mask_threshold",),
    "individual anatomy": ("individual_rms_mm", "individual_sigma_mm"),
}


def cohorts(only):
    from hcl_sklearn.datasets.cohort import REALISM

    basic, real = REALISM["basic"], REALISM["realistic"]
    out = []
    if only in (None, "add"):
        out.append(("basic", "basic"))
        out += [(f"basic + {p}", {k: real[k] for k in keys}) for p, keys in PROPERTIES.items()]
    if only in (None, "remove"):
        out.append(("realistic", "realistic"))
        out += [(f"realistic - {p}", {**real, **{k: basic[k] for k in keys}})
                for p, keys in PROPERTIES.items()]
    return out


def bias_corrected(X, degree=2):
    """Each volume divided by ``exp`` of the degree-``degree`` polynomial (no constant)
    fitted by least squares to its log intensity over its non-zero voxels."""
    shape = X.shape[2:]
    grid = np.meshgrid(*[np.linspace(-1.0, 1.0, s) for s in shape], indexing="ij")
    terms = list(grid)
    if degree >= 2:
        terms += [grid[i] * grid[j] for i in range(3) for j in range(i, 3)]
    B = np.stack([np.ones(grid[0].size)] + [t.ravel() for t in terms], axis=1)
    out = np.zeros_like(X)
    for s in range(X.shape[0]):
        for m in range(X.shape[1]):
            v = X[s, m].ravel().astype(np.float64)
            mask = v > 0
            coef, *_ = np.linalg.lstsq(B[mask], np.log(v[mask]), rcond=None)
            w = np.zeros_like(v)
            w[mask] = v[mask] * np.exp(-(B[mask, 1:] @ coef[1:]))
            out[s, m] = w.reshape(shape)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=400)
    ap.add_argument("--shape", type=int, nargs=3, default=(24, 28, 24))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="estimator seed")
    ap.add_argument("--cohort-seed", type=int, default=0)
    ap.add_argument("--only", choices=["add", "remove"], default=None)
    ap.add_argument("--bias-correction", action="store_true")
    args = ap.parse_args(argv)

    from hcl_sklearn.datasets import make_paired_cohort

    n_tr = int(round(0.8 * args.subjects))
    tr, te = np.arange(n_tr), np.arange(n_tr, args.subjects)
    print(f"{args.subjects} subjects at {tuple(args.shape)}: {n_tr} train, {len(te)} held "
          f"out (chance top-1 {1 / len(te):.4f}, recall@10 {10 / len(te):.3f}); base recipe, "
          f"{args.epochs} epochs, estimator seed {args.seed}\n")
    print("| cohort | bias-corrected | linear top-1 | contrastive top-1 | contrastive "
          "recall@10 | contrastive shared R² mean / min | PCA on voxels shared R² |")
    print("|---|---|---|---|---|---|---|")
    for name, realism in cohorts(args.only):
        b = make_paired_cohort(args.subjects, tuple(args.shape), realism=realism,
                               random_state=args.cohort_seed)
        X0 = np.asarray(b.X, np.float32)
        shared = er.shared_factors(b)
        for corrected in ((False, True) if args.bias_correction else (False,)):
            X = bias_corrected(X0) if corrected else X0
            vox = er._voxel_table(er.zscore(X))
            lin, _ = er.pca_cca_retrieval(vox, tr, te)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r, _, r2, _ = er.fit_and_score(X, tr, te, er.BASE, args.epochs, args.seed,
                                               shared)
            v = er.shared_r2(vox, shared, tr, te)
            print(f"| {name} | {'yes' if corrected else 'no'} | {lin['top1']:.3f} | "
                  f"{r['top1']:.3f} | {r['recall@10']:.3f} | {r2[0]:.3f} / {r2[1]:.3f} | "
                  f"{v[0]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
