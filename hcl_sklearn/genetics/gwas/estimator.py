"""CrossModalGWAS: GWAS of every embedding dimension, per-modality loci and their overlap."""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import ClassVar

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions

from ..._base import SharesDataOnClone
from ...data.covariates import CovariatePolicy

from .engine import GWASEngine

__all__ = ["CrossModalGWAS"]


class CrossModalGWAS(SharesDataOnClone, GWASEngine, BaseEstimator):
    """GWAS of every phenotype column (OLS or mixed model), loci per modality, T1/T2 overlap.

    ``model='ols'`` (default): for every (SNP, phenotype) pair the model
    ``y ~ intercept + covariates + SNP`` is fit exactly by OLS (as plink2 ``--glm``:
    ``df = N - K - 2`` for ``K`` covariates, per-``a1``-allele effect), all phenotypes of
    a missingness pattern in one matrix product per block of SNPs. For unrelated
    subjects of one ancestry (with ancestry PCs as covariates).

    ``model='lmm'``: a linear mixed model with a genomic relationship matrix (GRM) from
    the genotypes, leave-one-chromosome-out (LOCO), variance components by REML per
    phenotype under the null, then an exact generalised-least-squares test of every SNP
    (the EMMAX / GCTA ``--mlma-loco`` statistic, computed by eigen-rotation as in GEMMA
    and FaST-LMM; :mod:`hcl_sklearn.genetics.gwas.lmm`). For cohorts with relatives (UK
    Biobank: ~30 % of participants have a third-degree or closer relative), where OLS
    p-values are inflated. All phenotypes still share each pass over the genotypes. Phenotypes with different missing values are analysed on their own
    samples (grouped by missingness pattern), never imputed. Loci follow the protocol of
    :mod:`hcl_sklearn.genetics.gwas.loci`.

    Parameters
    ----------
    genotypes : Genotypes or str
        A :class:`hcl_sklearn.genetics.Genotypes` or a PLINK 1 prefix (``.bed/.bim/.fam``).
        Missing calls are mean-imputed (over the analysed samples).
    model : {'ols', 'lmm'}, default='ols'
        Association model (see above).
    grm : pandas.DataFrame, optional
        ``model='lmm'`` only: the GRM to use (indexed by subject id on both axes, e.g.
        from :func:`hcl_sklearn.genetics.grm` or another tool's kinship), for every
        chromosome (no LOCO). Default: built from the genotypes (SNPs with MAF >= ``maf``
        among the analysed samples, standardised as GCTA), LOCO when ``loco``.
    loco : bool, default=True
        ``model='lmm'``, ``grm=None``: leave the tested SNP's chromosome out of the GRM
        (needs SNPs on at least two chromosomes). ``False``: one GRM of all SNPs.
    h2 : float or array-like, optional
        ``model='lmm'``: fixed variance ratios ``s2g / (s2g + s2e)`` (one, or one per
        phenotype) instead of REML, e.g. another tool's estimates.
    covariates : pandas.DataFrame, optional
        Numeric covariates indexed by subject id (no intercept column; it is added).
        Samples with a missing covariate are dropped.
    alpha : float, default=5e-8
        Genome-wide level; a modality's threshold is ``alpha / n_dims`` of that modality.
    maf : float, default=0.01
        SNPs with minor allele frequency below ``maf`` (over the analysed samples) are
        not tested; monomorphic SNPs are never tested. Both are counted in ``snp_qc_``.
    block_size : int, default=2048
        Most SNPs per unit of work (fewer when that gives each thread ~8 units; a
        thread's statistics arrays take ~ ``8 * n_phenotypes * block_size`` bytes each;
        genotypes are decoded and multiplied in sub-blocks of ~16 MB of float64
        genotypes, at least 256 SNPs).
    device : str, default='cpu'
        ``'cpu'`` (numpy BLAS) or a torch device (``'cuda'``, ``'cuda:1'``) for the
        matrix products.
    backend : {'numpy', 'torch'}, optional
        Default: ``'numpy'`` on ``device='cpu'``, else ``'torch'``. ``backend='torch',
        device='cpu'`` runs the torch path on the CPU.
    clump_r2 : float, default=0.1
        r^2 above which a SNP joins an index SNP's clump.
    clump_window : int, default=250_000
        Clumping half window in bp.
    clump_p2 : float, default=1e-2
        p-value up to which a SNP can be clumped (index SNPs need the threshold).
    locus_pad : int, default=125_000
        bp added on each side of a clump before merging into loci.
    overlap : tuple of two str, default=('t1', 't2')
        The modalities compared in ``overlap_``.
    dtype : {'float64', 'float32'}, default='float64'
        Precision of the block product. ``'float32'`` (opt-in; ~1.4x faster on a CPU,
        more on GPUs) has ~1e-6 relative error of ``g'y`` (see
        :class:`~hcl_sklearn.genetics.gwas.association.AssociationKernel`): t and p stay far
        within 1e-3 in ``-log10 p``, but betas of null SNPs lose relative precision;
        sums of squares, statistics and p-values stay float64.
    n_jobs : int, optional
        Threads during ``fit`` (default: the BLAS library's own setting). With
        ``backend='numpy'`` SNP blocks are processed by ``n_jobs`` threads in parallel,
        each with one BLAS thread (decoding, products, statistics and p-values all run
        in parallel); the torch backend uses one thread and ``n_jobs`` BLAS threads.
    out_dir : str or path-like, optional
        Folder for the per-block results (``blocks/<start>-<end>.npz``, each written
        atomically, and ``run.json``, the run's fingerprint). A run killed part-way and
        started again with the same inputs reads the finished blocks and computes only
        the rest, giving the same results; a folder of a different run (other genotypes,
        phenotypes, covariates or settings) raises ``OutDirMismatchError`` naming what
        differs. With a folder, blocks are exactly ``block_size`` SNPs whatever the
        number of threads. Blocks read back are counted in ``block_store_.n_loaded``.
    cluster : distributed.Client, dask cluster or str, optional
        Run the SNP blocks as tasks on this dask.distributed cluster (a ``Client``, a
        ``LocalCluster`` / dask-jobqueue cluster, or a scheduler address such as
        ``'tcp://host:8786'``). Workers read their blocks from the ``.bed`` themselves
        (a path every worker can open) or receive in-memory genotypes once; results equal
        the single-process scan, and a task whose worker dies is retried. Works with
        ``out_dir``. Needs ``pip install 'dask[distributed]'``. See
        :mod:`hcl_sklearn.genetics.gwas.distributed`.
    verbose : int, default=0
        ``> 0`` shows a progress bar over SNP blocks.

    Attributes
    ----------
    sumstats_ : pandas.DataFrame
        Long format, one row per tested (SNP, phenotype): ``phenotype, chromosome,
        base_pair_location, variant_id, effect_allele, other_allele,
        effect_allele_frequency, beta, standard_error, t_stat, p_value, neg_log10_p, n``.
        Built on access from compact arrays; ``p_value`` underflows to 0 below ~1e-308
        while ``neg_log10_p`` stays exact.
    phenotypes_ : list of str
    modalities_ : dict of str -> list of str
        Phenotype columns of each modality (prefix before the first ``_``).
    snps_ : pandas.DataFrame
        The tested SNPs (``chrom, pos, variant_id, a1, a2``).
    snp_qc_ : dict
        ``n_snps_in, n_monomorphic, n_low_maf, n_tested``.
    h2_null_ : pandas.DataFrame
        ``model='lmm'``: the REML heritability of each phenotype (rows) under the null
        model of each LOCO GRM (columns: chromosomes; ``'all'`` without LOCO).
    n_samples_ : pandas.Series
        Samples of each phenotype. ``df_`` : residual degrees of freedom of each.
    lambda_gc_ : pandas.Series
        Genomic inflation (median chi^2 / 0.4549) of each phenotype.
    thresholds_ : dict of str -> float
        ``alpha / n_dims`` per modality.
    min_p_ : dict of str -> pandas.DataFrame
        Per modality and SNP: ``chromosome, base_pair_location, variant_id,
        neg_log10_p, p_value, phenotype`` (the dimension giving the minimum p).
    leads_ : dict of str -> pandas.DataFrame
        Clumps (lead SNPs) of each modality, see :func:`hcl_sklearn.genetics.gwas.loci.clump`.
    loci_ : dict of str -> pandas.DataFrame
        Padded, merged loci of each modality (``chromosome, start, end, n_leads,
        lead_variant_id, lead_base_pair_location, lead_neg_log10_p``).
    overlap_ : LociOverlap or None
        Pooled loci of the two ``overlap`` modalities with ``n_shared, n_only_a,
        n_only_b, jaccard`` (None unless both modalities are present).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import Genotypes
    >>> g = Genotypes.from_plink(get_1000g_chr22()).subset(np.arange(2000))
    >>> rng = np.random.default_rng(0)
    >>> G = g.read(snps=[100])
    >>> Y = pd.DataFrame(rng.normal(size=(g.n_samples, 4)), index=g.iid,
    ...                  columns=["t1_0", "t1_1", "t2_0", "t2_1"])
    >>> Y["t1_0"] += 1.5 * G[:, 0]
    >>> gwas = CrossModalGWAS(g).fit(Y)
    >>> gwas.sumstats_.shape[0] == 4 * gwas.snp_qc_["n_tested"]
    True
    >>> gwas.leads_["t1"]["variant_id"].iloc[0] == g.snps["variant_id"].iloc[100]
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "genotypes": "no_validation",
        "model": [StrOptions({"ols", "lmm"})],
        "grm": [pd.DataFrame, None],
        "loco": ["boolean"],
        "h2": [Interval(Real, 0, 1, closed="left"), "array-like", None],
        "covariates": [pd.DataFrame, pd.Series, None],
        "covariate_policy": [CovariatePolicy, dict, None],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "maf": [Interval(Real, 0, 0.5, closed="left")],
        "block_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "backend": [StrOptions({"numpy", "torch"}), None],
        "clump_r2": [Interval(Real, 0, 1, closed="left")],
        "clump_window": [Interval(Real, 0, None, closed="left")],
        "clump_p2": [Interval(Real, 0, 1, closed="right")],
        "locus_pad": [Interval(Real, 0, None, closed="left")],
        "overlap": [tuple, list],
        "dtype": [StrOptions({"float64", "float32"})],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "out_dir": [str, os.PathLike, None],
        "cluster": "no_validation",
        "verbose": ["verbose"],
    }
    #: data-valued parameters shared (not copied) by ``clone``
    _shared_params = ("genotypes", "grm", "covariates", "cluster")

    def _check_params(self):
        """The parameter constraints, then the engine's checks of what they cannot say."""
        self._validate_params()
        return super()._check_params()
