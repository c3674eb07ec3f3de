"""``write_cohort``: a simulated cohort as files (BIDS-like NIfTI tree, PLINK, TSV)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_LABEL = re.compile(r"^[A-Za-z0-9]+$")

__all__ = ["write_cohort"]


def write_cohort(bunch, path, *, overwrite=False, verbose=0):
    """Write a cohort from :func:`make_paired_cohort` to disk.

    Layout under ``path``::

        dataset_description.json
        participants.tsv                      participant_id (sub-<id>), age, sex
        sub-<id>/anat/sub-<id>_T1w.nii.gz     float32, RAS affine of the MNI152 grid
        sub-<id>/anat/sub-<id>_T2w.nii.gz
        genotypes.bed / .bim / .fam           PLINK 1, IID = subject id, counted allele a1
        covariates.tsv                        subject_id, age, sex, PC1..PCk
        phenotypes.tsv                        subject_id, age, disorder, latent factor values
        truth_factors.tsv                     the latent factors (kind, modalities, h2)
        truth_causal.tsv                      causal SNPs and effects per heritable factor

    Images are written only when ``bunch.X`` is not None. The ``<id>`` labels are the
    subject ids, so :func:`hcl_sklearn.data.volumes.pairs_from_bids` indexes the pairs by the same
    ids as the genotypes' IIDs and the TSVs.

    Parameters
    ----------
    bunch : Bunch
        Output of :func:`make_paired_cohort`.
    path : str or Path
        Output folder (created).
    overwrite : bool, default=False
        Write into a non-empty folder (existing files of the same name are replaced).
    verbose : int, default=0
        Progress bar over subjects when > 0.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile
    >>> from hcl_sklearn.datasets import make_paired_cohort, write_cohort
    >>> from hcl_sklearn.data.volumes import pairs_from_bids
    >>> b = make_paired_cohort(n_subjects=3, shape=(16, 20, 16), random_state=0)
    >>> root = write_cohort(b, tempfile.mkdtemp())
    >>> pairs_from_bids(root).index.tolist() == b.subject_ids.tolist()
    True
    """
    import nibabel as nib
    from bed_reader import to_bed
    from tqdm.auto import tqdm

    missing = [k for k in ("subject_ids", "genotypes", "snps", "covariates", "age",
                           "disorder", "truth") if k not in bunch]
    if missing:
        raise TypeError(f"bunch lacks {missing}; pass the output of make_paired_cohort.")
    ids = pd.Index(bunch.subject_ids).astype(str)
    bad = [s for s in ids if not _LABEL.match(s)]
    if bad:
        raise ValueError(
            f"{len(bad)} subject id(s) are not valid BIDS labels (letters and digits only), "
            f"e.g. {bad[:5]}; rename them (e.g. strip '-' and '_') before writing."
        )
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{str(root)!r} exists and is not a folder; choose a folder path.")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise ValueError(f"{str(root)!r} is not empty; pass overwrite=True or choose an "
                         "empty folder.")
    root.mkdir(parents=True, exist_ok=True)

    desc = {
        "Name": "hcl-sklearn simulated paired T1/T2 cohort",
        "BIDSVersion": "1.8.0",
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "hcl_sklearn.datasets.make_paired_cohort"}],
        "Description": "Simulated: MNI152 anatomy warped by latent factors; genotypes "
                       "resampled from real 1000 Genomes EUR chr22 haplotype segments.",
    }
    (root / "dataset_description.json").write_text(json.dumps(desc, indent=2) + "\n")
    sex = bunch.covariates["sex"] if "sex" in bunch.covariates else None
    part = pd.DataFrame({"participant_id": ["sub-" + s for s in ids],
                         "age": np.asarray(bunch.age)}, index=ids)
    if sex is not None:
        part["sex"] = np.where(np.asarray(sex) == 1, "M", "F")
    part.to_csv(root / "participants.tsv", sep="\t", index=False)

    if bunch.get("X") is not None:
        X = np.asarray(bunch.X)
        affine = bunch.get("affine")
        if affine is None:
            affine = np.eye(4)
        for i, sid in enumerate(tqdm(ids, desc="writing NIfTI", disable=not verbose)):
            anat = root / f"sub-{sid}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            for c, suffix in enumerate(("T1w", "T2w")):
                img = nib.Nifti1Image(np.asarray(X[i, c], dtype=np.float32), affine)
                img.header.set_xyzt_units("mm")
                nib.save(img, str(anat / f"sub-{sid}_{suffix}.nii.gz"))

    snps = bunch.snps
    props = {
        "fid": ids.to_numpy(), "iid": ids.to_numpy(),
        "sex": (np.where(np.asarray(sex) == 1, 1, 2) if sex is not None
                else np.zeros(len(ids), dtype=int)),
        "chromosome": snps["chrom"].astype(str).to_numpy(),
        "sid": snps["id"].astype(str).to_numpy(),
        "bp_position": snps["pos"].to_numpy(),
        "allele_1": snps["a1"].astype(str).to_numpy(),
        "allele_2": snps["a2"].astype(str).to_numpy(),
    }
    if "cm" in snps:
        props["cm_position"] = snps["cm"].to_numpy(dtype=float)
    to_bed(str(root / "genotypes.bed"), np.asarray(bunch.genotypes, dtype=np.int8),
           properties=props, count_A1=True)

    cov = bunch.covariates.copy()
    cov.index = ids.rename("subject_id")
    cov.to_csv(root / "covariates.tsv", sep="\t")
    pheno = pd.DataFrame({"age": np.asarray(bunch.age),
                          "disorder": np.asarray(bunch.disorder)},
                         index=ids.rename("subject_id"))
    fv = bunch.truth.factor_values
    pheno = pheno.join(fv.set_axis(ids, axis=0).add_prefix("factor_"))
    pheno.to_csv(root / "phenotypes.tsv", sep="\t")
    factors = bunch.truth.factors.copy()
    factors["modalities"] = factors["modalities"].map(",".join)
    factors.to_csv(root / "truth_factors.tsv", sep="\t")
    bunch.truth.causal.to_csv(root / "truth_causal.tsv", sep="\t", index=False)
    logger.info("wrote %d subjects to %s", len(ids), root)
    return root
