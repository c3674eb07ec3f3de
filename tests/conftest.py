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
