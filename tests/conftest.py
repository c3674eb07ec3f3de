"""Shared test fixtures."""

import numpy as np


def real_ld_genotypes(n_subjects, n_snps, random_state):
    """``Genotypes`` of ``n_subjects`` simulated subjects with the real 1000G chr22 LD.

    Drawn by the package's own mosaic simulator (segments of the real panel), restricted to
    the first ``n_snps`` SNPs.
    """
    from hcl_sklearn.datasets.genotypes import simulate_genotypes
    from hcl_sklearn.genetics import Genotypes

    G, snps = simulate_genotypes(n_subjects, random_state=random_state)
    ids = [f"mosaic{i:06d}" for i in range(n_subjects)]
    return Genotypes.from_array(np.asarray(G[:, :n_snps], dtype=np.float32), ids,
                                snps=snps.iloc[:n_snps].reset_index(drop=True))


def write_cohort_bed(prefix, bunch):
    """Write a simulated cohort's genotypes as PLINK 1 ``prefix.bed/.bim/.fam`` (the
    ``.bed`` path of the GWAS scan); returns ``prefix``."""
    from bed_reader import to_bed

    ids = np.asarray(bunch.subject_ids).astype(str)
    snps = bunch.snps
    to_bed(str(prefix) + ".bed", np.asarray(bunch.genotypes, dtype=np.int8), count_A1=True,
           properties={"fid": ids, "iid": ids, "chromosome": snps["chrom"].astype(str),
                       "sid": snps["id"].astype(str), "bp_position": snps["pos"],
                       "allele_1": snps["a1"].astype(str), "allele_2": snps["a2"].astype(str)})
    return prefix
