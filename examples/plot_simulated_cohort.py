"""
Simulated paired T1/T2 cohort
=============================

Draws a few subjects from :func:`hcl_sklearn.datasets.make_paired_cohort` and saves a PNG of
their T1- and T2-weighted images (axial and coronal slices through the ventricles), with each
subject's age, disorder status and T2 white-matter hyperintensity factor in the title.

Run: ``python examples/plot_simulated_cohort.py [output.png]``
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hcl_sklearn.datasets import make_paired_cohort  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "simulated_cohort.png"
shape = (91, 109, 91)  # 2 mm
n_show = 4
b = make_paired_cohort(n_subjects=n_show, shape=shape, random_state=0)

z = int(shape[2] * 0.48)  # axial slice through the lateral ventricles (z ~ 15 mm)
y = int(shape[1] * 0.52)  # coronal slice through the ventricles
fig, axes = plt.subplots(4, n_show, figsize=(2.6 * n_show, 10.5))
for j, sid in enumerate(b.subject_ids):
    t1, t2 = b.X[j]
    views = [(t1[:, :, z], "T1 axial"), (t2[:, :, z], "T2 axial"),
             (t1[:, y, :], "T1 coronal"), (t2[:, y, :], "T2 coronal")]
    for r, (img, label) in enumerate(views):
        ax = axes[r, j]
        vmax = np.percentile(img[img > 0], 99.5)
        ax.imshow(img.T, origin="lower", cmap="gray", vmin=0, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel(label)
    f = b.truth.factor_values.loc[sid]
    axes[0, j].set_title(f"{sid}: age {b.age[sid]:.0f}, disorder {b.disorder[sid]}\n"
                         f"T2 WMH factor {f['t2_wmh']:+.1f}", fontsize=9)
fig.suptitle("make_paired_cohort: real MNI152 anatomy, warped per subject (2 mm)")
fig.tight_layout()
fig.savefig(out, dpi=90)
print(f"saved {out}")
