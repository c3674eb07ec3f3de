"""Speed of the cohort simulator (``make_paired_cohort``).

Prints, on this machine:

* 500 subjects at 32 x 40 x 32 (genotypes, factors, images), cold (first call of the
  process: reads nilearn's 1 mm MNI152 maps and builds the bases) and warm; the issue's
  target is < 60 s; the ratio to that target is printed;
* the genetic part alone (``shape=None``) as the peer run, so the image cost is visible;
* 1 mm full size (182 x 218 x 182): seconds per subject (3 subjects).

Run: ``python benchmarks/simulator.py`` (about a minute on 2 cores).
"""

import os
import time

import numpy as np

from hcl_sklearn.datasets import make_paired_cohort


def timed(**kw):
    t0 = time.perf_counter()
    b = make_paired_cohort(**kw)
    return time.perf_counter() - t0, b


def main():
    print(f"cpu cores: {os.cpu_count()}")
    cold, b = timed(n_subjects=500, shape=(32, 40, 32), random_state=0)
    print(f"500 subjects, 32x40x32, cold : {cold:6.1f} s  (X {b.X.shape}, "
          f"genotypes {b.genotypes.shape})")
    warm, _ = timed(n_subjects=500, shape=(32, 40, 32), random_state=1)
    print(f"500 subjects, 32x40x32, warm : {warm:6.1f} s  = {warm / 60:.2f} x the 60 s target "
          f"({1000 * warm / 500:.0f} ms / subject)")
    gen, _ = timed(n_subjects=500, shape=None, random_state=1)
    print(f"500 subjects, genetics only  : {gen:6.1f} s  (images = {warm - gen:.1f} s, "
          f"{(warm - gen) / max(warm, 1e-9):.0%} of the warm run)")
    full_shape = (182, 218, 182)
    timed(n_subjects=3, shape=full_shape, random_state=0)  # warm the 1 mm caches
    t2, b2 = timed(n_subjects=3, shape=full_shape, random_state=2)
    t_gen, _ = timed(n_subjects=3, shape=None, random_state=2)
    per = (t2 - t_gen) / 3
    print(f"1 mm {full_shape}: {per:6.2f} s / subject for the images "
          f"({b2.X.nbytes / 3 / 2**20:.0f} MiB per subject pair; "
          f"non-zero fraction {np.mean(b2.X != 0):.2f})")


if __name__ == "__main__":
    main()
