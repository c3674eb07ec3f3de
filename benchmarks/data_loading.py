"""Data-layer throughput: volumes/s from .nii.gz, from the preprocessed cache, and from RAM.

Subjects are the real MNI152 1 mm template (nilearn, no download) with per-subject
intensity jitter, written as gzip NIfTI; T2 is the inverted contrast. Each pass reads
every subject's T1 and T2 through ``PairedVolumes`` (z-score, pad to 182x224x182,
optional downsampling), in one process as a DataLoader with ``num_workers=0`` would.

Run:  python benchmarks/data_loading.py [--subjects 6]
"""

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def make_files(root, n_subjects):
    from nilearn.datasets import load_mni152_template

    tpl = load_mni152_template(resolution=1)
    data = np.asarray(tpl.get_fdata(), dtype=np.float32)
    rng = np.random.default_rng(0)
    rows = {}
    for i in range(n_subjects):
        sid = f"sub{i:03d}"
        t1 = data * rng.uniform(0.8, 1.2)
        t2 = np.where(data > 0, data.max() - data + 1, 0) * rng.uniform(0.8, 1.2)
        paths = []
        for name, vol in (("T1w", t1), ("T2w", t2)):
            p = root / f"{sid}_{name}.nii.gz"
            nib.save(nib.Nifti1Image(vol.astype(np.float32), tpl.affine), str(p))
            paths.append(str(p))
        rows[sid] = paths
    return pd.DataFrame.from_dict(rows, orient="index", columns=["t1", "t2"]), data.shape


def timed_pass(ds):
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return 2 * len(ds) / (time.perf_counter() - start)  # volumes per second


def main():
    from hcl_sklearn.data.volumes import PairedVolumes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frame, native = make_files(tmp, args.subjects)
        print(f"{args.subjects} subjects x 2 modalities, native grid {native} (real MNI152 1 mm)")
        print(f"{'setting':<24}{'nii.gz':>10}{'cache 1st':>11}{'cache 2nd':>11}"
              f"{'in-memory':>11}{'2nd/1st':>9}   (volumes/s)")
        for label, ds_kw in (("1 mm, 182x224x182", dict(downsample=1)),
                             ("downsample 4 (46x56x46)", dict(downsample=4))):
            plain = timed_pass(PairedVolumes(frame, **ds_kw))
            cached = PairedVolumes(frame, cache_dir=tmp / f"cache{ds_kw['downsample']}", **ds_kw)
            first = timed_pass(cached)
            second = timed_pass(cached)
            # in-memory: the same preprocessing from an ndarray (no file decoding)
            raw = np.stack([np.stack([nib.load(p).get_fdata(dtype=np.float32)
                                      for p in frame.loc[s]]) for s in frame.index])
            memory = timed_pass(PairedVolumes(raw, **ds_kw))
            del raw
            print(f"{label:<24}{plain:>10.2f}{first:>11.2f}{second:>11.2f}"
                  f"{memory:>11.2f}{second / first:>8.1f}x")


if __name__ == "__main__":
    main()
