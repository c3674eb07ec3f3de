"""CrossModalGWAS: GWAS of every embedding dimension, per-modality loci and their overlap."""

from __future__ import annotations

import logging
import os
import queue
import threading

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator

from .association import AssociationKernel, covariate_basis
from .loci import clump_positions, loci_from_clumps, overlap_loci, _lead_table
from ..subjects import SubjectMismatchError, describe_mismatch
from .sumstats import long_frame, write_parquet, write_tsv_gz

logger = logging.getLogger(__name__)

__all__ = ["CrossModalGWAS"]

_CHI2_MEDIAN = stats.chi2.ppf(0.5, 1)


def modality_of(column):
    """Modality of a phenotype column: the text before its first ``_`` (else the name)."""
    column = str(column)
    return column.split("_", 1)[0] if "_" in column else column


def _prefetch(iterator, depth=1):
    """Run ``iterator`` in a thread one item ahead (reading overlaps computing)."""
    q = queue.Queue(maxsize=depth)
    done = object()

    def work():
        try:
            for item in iterator:
                q.put(item)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)
        q.put(done)

    th = threading.Thread(target=work, daemon=True)
    th.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    th.join()


class CrossModalGWAS(BaseEstimator):
    """Exact OLS GWAS of every phenotype column, loci per modality and their T1/T2 overlap.

    For every (SNP, phenotype) pair the model ``y ~ intercept + covariates + SNP`` is fit
    exactly by OLS (as plink2 ``--glm``: ``df = N - K - 2`` for ``K`` covariates, per-
    ``a1``-allele effect), all phenotypes of a missingness pattern in one matrix product
    per block of SNPs. Phenotypes with different missing values are analysed on their own
    samples (grouped by missingness pattern), never imputed. Loci follow the protocol of
    :mod:`hcl_sklearn.gwas.loci`.

    Parameters
    ----------
    genotypes : Genotypes or str
        A :class:`hcl_sklearn.genetics.Genotypes` or a PLINK 1 prefix (``.bed/.bim/.fam``).
        Missing calls are mean-imputed (over the analysed samples).
    covariates : pandas.DataFrame, optional
        Numeric covariates indexed by subject id (no intercept column; it is added).
        Samples with a missing covariate are dropped.
    alpha : float, default=5e-8
        Genome-wide level; a modality's threshold is ``alpha / n_dims`` of that modality.
    maf : float, default=0.01
        SNPs with minor allele frequency below ``maf`` (over the analysed samples) are
        not tested; monomorphic SNPs are never tested. Both are counted in ``snp_qc_``.
    block_size : int, default=2048
        SNPs per streamed block (memory ~ ``8 * n_samples * block_size`` bytes).
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
        Precision of the block product. ``'float32'`` is meant for GPUs (on a CPU
        the extra centring pass can cancel the 2x sgemm rate), at ~1e-6 relative error of ``g'y`` (see
        :class:`~hcl_sklearn.gwas.association.AssociationKernel`); sums of squares,
        statistics and p-values stay float64.
    n_jobs : int, optional
        BLAS threads during ``fit`` (default: the library's own setting).
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
        Clumps (lead SNPs) of each modality, see :func:`hcl_sklearn.gwas.loci.clump`.
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

    def __init__(self, genotypes, covariates=None, alpha=5e-8, maf=0.01, block_size=2048,
                 device="cpu", backend=None, clump_r2=0.1, clump_window=250_000,
                 clump_p2=1e-2, locus_pad=125_000, overlap=("t1", "t2"), dtype="float64",
                 n_jobs=None, verbose=0):
        self.genotypes = genotypes
        self.covariates = covariates
        self.alpha = alpha
        self.maf = maf
        self.block_size = block_size
        self.device = device
        self.backend = backend
        self.clump_r2 = clump_r2
        self.clump_window = clump_window
        self.clump_p2 = clump_p2
        self.locus_pad = locus_pad
        self.overlap = overlap
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_params(self):
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise ValueError(f"alpha must be a float in (0, 1); got {self.alpha!r}.")
        if not (isinstance(self.maf, (int, float)) and 0 <= self.maf < 0.5):
            raise ValueError(f"maf must be in [0, 0.5); got {self.maf!r}.")
        if not (isinstance(self.block_size, (int, np.integer)) and self.block_size >= 1):
            raise ValueError(f"block_size must be a positive int; got {self.block_size!r}.")
        if not 0 <= self.clump_r2 < 1:
            raise ValueError(f"clump_r2 must be in [0, 1); got {self.clump_r2!r}.")
        if not 0 < self.clump_p2 <= 1:
            raise ValueError(f"clump_p2 must be in (0, 1]; got {self.clump_p2!r}.")
        if self.clump_window < 0 or self.locus_pad < 0:
            raise ValueError("clump_window and locus_pad must be >= 0 (bp).")
        backend = self.backend or ("numpy" if str(self.device) == "cpu" else "torch")
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch'; got {self.backend!r}.")
        if backend == "numpy" and str(self.device) != "cpu":
            raise ValueError(f"backend='numpy' runs on device='cpu' only; got "
                             f"device={self.device!r}. Use backend='torch'.")
        if backend == "torch" and str(self.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device={self.device!r} but torch sees no CUDA GPU; "
                                 "use device='cpu'.")
        if str(self.dtype) not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32'; got {self.dtype!r}.")
        if (not isinstance(self.overlap, (tuple, list)) or len(self.overlap) != 2):
            raise ValueError(f"overlap must be a pair of modality names; got {self.overlap!r}.")
        return backend

    def _open_genotypes(self):
        from ..genetics import Genotypes

        g = self.genotypes
        if isinstance(g, Genotypes):
            return g
        if isinstance(g, (str, os.PathLike)):
            return Genotypes.from_plink(g)
        raise TypeError("genotypes must be a hcl_sklearn.genetics.Genotypes or a PLINK "
                        f"prefix (str); got {type(g).__name__}.")

    @staticmethod
    def _check_frame(X, what):
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{what} must be a pandas DataFrame indexed by subject id; "
                            f"got {type(X).__name__}.")
        bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if bad:
            raise TypeError(f"{what} columns {bad[:10]} are not numeric; encode them "
                            "(e.g. pandas.get_dummies(..., drop_first=True)).")
        if X.index.has_duplicates:
            dup = X.index[X.index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"{what} has duplicated subject ids, e.g. {dup}.")
        if X.columns.has_duplicates:
            dup = X.columns[X.columns.duplicated()].unique()[:5].tolist()
            raise ValueError(f"{what} has duplicated column names, e.g. {dup}.")
        X = X.astype(np.float64)
        X.index = X.index.astype(str)
        return X

    # ------------------------------------------------------------------ fit
    def fit(self, Y, y=None):
        """Run the GWAS of every column of ``Y``, then clump loci per modality.

        Parameters
        ----------
        Y : pandas.DataFrame of shape (n_subjects, n_phenotypes)
            Indexed by subject id; columns ``t1_*``, ``t2_*`` (any prefix before the
            first ``_`` is a modality). NaN marks a missing value.
        y : ignored

        Returns
        -------
        self
        """
        from threadpoolctl import threadpool_limits

        backend = self._validate_params()
        geno = self._open_genotypes()
        Y = self._check_frame(Y, "Y")
        if Y.shape[1] == 0 or Y.shape[0] == 0:
            raise ValueError(f"Y is empty (shape {Y.shape}); give one column per phenotype.")
        if np.isinf(Y.to_numpy()).any():
            bad = Y.columns[np.isinf(Y.to_numpy()).any(axis=0)].tolist()[:10]
            raise ValueError(f"Y columns {bad} contain inf; set those values to NaN.")
        Y.columns = Y.columns.astype(str)
        ids = Y.index
        geno_rows = geno.align(ids)  # SampleMismatchError (a ValueError) names the ids
        del geno_rows
        if self.covariates is not None:
            C = self._check_frame(self.covariates, "covariates")
            if not ids.isin(C.index).all():
                raise SubjectMismatchError(describe_mismatch(
                    ids, C.index, "covariates", fix="Subset Y to the subjects that have "
                    "covariates (the index of Y is the subject id)."))
            C = C.loc[ids]
            complete = C.notna().all(axis=1).to_numpy()
            if not complete.all():
                logger.warning("%d of %d subjects have a missing covariate and are dropped.",
                               int((~complete).sum()), len(complete))
        else:
            C = pd.DataFrame(index=ids)
            complete = np.ones(len(ids), dtype=bool)
        observed = Y.notna().to_numpy() & complete[:, None]
        empty = Y.columns[observed.sum(axis=0) == 0].tolist()
        if empty:
            raise ValueError(f"Phenotypes {empty[:10]} have no observed value with complete "
                             "covariates; drop them.")
        # union of analysed samples, then one group per missingness pattern
        union = observed.any(axis=1)
        union_ids = ids[union]
        obs_u = observed[union]
        patterns = {}
        for j in range(obs_u.shape[1]):
            patterns.setdefault(obs_u[:, j].tobytes(), []).append(j)
        groups = []
        Cu = C.to_numpy()[union]
        Yu = Y.to_numpy()[union]
        for cols in patterns.values():
            rows = np.flatnonzero(obs_u[:, cols[0]])
            names = [Y.columns[j] for j in cols]
            Q = covariate_basis(Cu[rows], names=list(C.columns))
            try:
                kern = AssociationKernel(Yu[np.ix_(rows, cols)], Q, backend=backend,
                                         device=self.device, dtype=self.dtype)
            except ValueError as exc:
                raise ValueError(f"Phenotypes {names[:10]}: {exc}") from exc
            if kern.constant.any():
                const = [names[k] for k in np.flatnonzero(kern.constant)]
                raise ValueError(f"Phenotypes {const[:10]} are constant after regressing out "
                                 "the covariates (no variance to associate); drop them.")
            groups.append({"cols": np.asarray(cols), "rows": rows,
                           "all_rows": rows.size == union.sum(), "kernel": kern})
        logger.info("GWAS of %d phenotypes on %d subjects (%d missingness patterns), "
                    "%d covariates, %d SNPs", Y.shape[1], len(union_ids), len(groups),
                    C.shape[1], geno.n_snps)

        P, M = Y.shape[1], geno.n_snps
        beta = np.full((M, P), np.nan)
        se = np.full((M, P), np.nan)
        tst = np.full((M, P), np.nan)
        lp = np.full((M, P), np.nan)
        freq = np.full((M, len(groups)), np.nan)
        tested = np.zeros(M, dtype=bool)
        n_mono = n_maf = 0
        from tqdm.auto import tqdm

        # all genotyped samples in file order: read without a row index (faster)
        same_rows = len(union_ids) == geno.n_samples and union_ids.equals(geno.iid)
        blocks = geno.iter_blocks(block_size=int(self.block_size),
                                  samples=None if same_rows else union_ids,
                                  standardize=False)
        n_blocks = -(-M // int(self.block_size))
        limits = threadpool_limits(self.n_jobs, user_api="blas") if self.n_jobs else None
        try:
            for idx, G in tqdm(_prefetch(blocks), total=n_blocks, disable=not self.verbose,
                               desc="GWAS blocks", unit="block"):
                # every group is scanned on the whole block; SNPs that fail the QC
                # (known only after the union's sums) are dropped afterwards
                scans, s_u, g2_u = [], None, None
                for grp in groups:
                    Gg = G if grp["all_rows"] else G[grp["rows"]]
                    res = grp["kernel"].scan(Gg)
                    scans.append(res)
                    if grp["all_rows"] and s_u is None:
                        s_u, g2_u = res.g_sum, res.g2
                if s_u is None:
                    s_u, g2_u = G.sum(axis=0), np.einsum("ij,ij->j", G, G)
                n_u = G.shape[0]
                af = s_u / (2.0 * n_u)
                mono = ~(n_u * g2_u - s_u * s_u > 1e-12 * n_u * g2_u)
                low = ~mono & (np.minimum(af, 1.0 - af) < self.maf)
                keep = ~mono & ~low
                n_mono += int(mono.sum())
                n_maf += int(low.sum())
                if not keep.any():
                    continue
                idx = idx[keep]
                tested[idx] = True
                for gi, (grp, res) in enumerate(zip(groups, scans)):
                    cols = grp["cols"]
                    kern = grp["kernel"]
                    t = res.t[keep]
                    out = (res.beta[keep], res.se[keep], t, kern.log10_pvalue(t))
                    if len(groups) == 1:
                        for arr, val in zip((beta, se, tst, lp), out):
                            arr[idx] = val
                    else:
                        ix = np.ix_(idx, cols)
                        for arr, val in zip((beta, se, tst, lp), out):
                            arr[ix] = val
                    freq[idx, gi] = res.g_sum[keep] / (2.0 * grp["rows"].size)
        finally:
            if limits is not None:
                limits.restore_original_limits()
        logger.info("SNPs: %d monomorphic and %d with MAF < %g skipped; %d tested.",
                    n_mono, n_maf, self.maf, int(tested.sum()))
        self.snp_qc_ = {"n_snps_in": int(M), "n_monomorphic": n_mono, "n_low_maf": n_maf,
                        "n_tested": int(tested.sum())}
        self._geno = geno
        self._samples = union_ids
        self._tested_pos = np.flatnonzero(tested)
        self.snps_ = geno.snps.iloc[self._tested_pos].reset_index(drop=True)
        self._beta, self._se, self._t, self._log10_p = (
            a[tested] for a in (beta, se, tst, lp))
        self._freq = freq[tested]
        self.phenotypes_ = list(Y.columns)
        self._group_of = np.empty(P, dtype=np.intp)
        n_samp, dfs = np.empty(P, dtype=np.int64), np.empty(P, dtype=np.int64)
        for gi, grp in enumerate(groups):
            self._group_of[grp["cols"]] = gi
            n_samp[grp["cols"]] = grp["rows"].size
            dfs[grp["cols"]] = grp["kernel"].df
        self.n_samples_ = pd.Series(n_samp, index=self.phenotypes_, name="n")
        self.df_ = pd.Series(dfs, index=self.phenotypes_, name="df")
        self.modalities_ = {}
        for c in self.phenotypes_:
            self.modalities_.setdefault(modality_of(c), []).append(c)
        self.lambda_gc_ = pd.Series(self._lambda_gc(self._log10_p), index=self.phenotypes_,
                                    name="lambda_gc")
        self._find_loci()
        return self

    @staticmethod
    def _lambda_gc(log10_p):
        """median(chi2_1 quantile of p) / 0.4549 per column; the median is taken on p
        (monotone), so only the one or two middle values are transformed."""
        lam = np.full(log10_p.shape[1], np.nan)
        for j in range(log10_p.shape[1]):
            v = log10_p[:, j]
            v = v[~np.isnan(v)]
            n = v.size
            if n == 0:
                continue
            k = n // 2
            mid = np.partition(v, [k - 1, k] if n > 1 else [k])
            mids = mid[[k]] if n % 2 else mid[[k - 1, k]]
            lam[j] = stats.chi2.isf(np.power(10.0, mids), 1).mean() / _CHI2_MEDIAN
        return lam

    # ------------------------------------------------------------------ loci
    def _find_loci(self):
        self.thresholds_, self.min_p_, self.leads_, self.loci_ = {}, {}, {}, {}
        snps = self.snps_
        for mod, cols in self.modalities_.items():
            j = np.array([self.phenotypes_.index(c) for c in cols])
            nlp = -self._log10_p[:, j]
            has = ~np.isnan(nlp).all(axis=1)
            best = np.zeros(len(nlp), dtype=np.intp)
            best[has] = np.nanargmax(nlp[has], axis=1)
            mnlp = np.where(has, nlp[np.arange(len(nlp)), best], np.nan)
            thr = self.alpha / len(cols)
            self.thresholds_[mod] = thr
            mp = pd.DataFrame({
                "chromosome": snps["chrom"].to_numpy(),
                "base_pair_location": snps["pos"].to_numpy(dtype=np.int64),
                "variant_id": snps["variant_id"].to_numpy(),
                "neg_log10_p": mnlp,
                "p_value": np.power(10.0, -mnlp),
                "phenotype": np.asarray(cols, dtype=object)[best],
            })
            self.min_p_[mod] = mp
            clump_of, leads = clump_positions(
                mp["chromosome"], mp["base_pair_location"], mnlp, self._tested_pos,
                self._geno, samples=self._samples, p1=thr, p2=max(self.clump_p2, thr),
                r2=self.clump_r2, window=int(self.clump_window))
            lead_tab = _lead_table(mp, clump_of, leads, thr)
            lead_tab["phenotype"] = mp["phenotype"].to_numpy()[leads]
            self.leads_[mod] = lead_tab
            self.loci_[mod] = loci_from_clumps(lead_tab, pad=int(self.locus_pad))
            logger.info("Modality %s: %d dims, threshold %.3g, %d clumps, %d loci", mod,
                        len(cols), thr, len(lead_tab), len(self.loci_[mod]))
        a, b = self.overlap
        self.overlap_ = (overlap_loci(self.loci_[a], self.loci_[b], names=(a, b))
                         if a in self.loci_ and b in self.loci_ else None)

    # ------------------------------------------------------------------ results
    def _check_fitted(self):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "snps_")

    def iter_sumstats(self, phenotypes=None):
        """Yield ``(phenotype, frame)`` with one phenotype's GWAS-SSF table at a time."""
        self._check_fitted()
        names = self.phenotypes_ if phenotypes is None else list(phenotypes)
        for name in names:
            if name not in self.phenotypes_:
                raise ValueError(f"Unknown phenotype {name!r}; fitted: {self.phenotypes_[:5]}...")
            j = self.phenotypes_.index(name)
            yield name, long_frame(self.snps_, name, self._beta[:, j], self._se[:, j],
                                   self._t[:, j], self._log10_p[:, j],
                                   self._freq[:, self._group_of[j]], self.n_samples_[name])

    @property
    def sumstats_(self):
        """Long-format summary statistics of every tested (SNP, phenotype)."""
        self._check_fitted()
        return pd.concat([f for _, f in self.iter_sumstats()], ignore_index=True)

    def to_tsv_gz(self, path, per_phenotype=False):
        """Write the summary statistics as gzip TSV (one long file or one per phenotype).

        Parameters
        ----------
        path : str or path-like
            File path, or a directory when ``per_phenotype=True``
            (``<dir>/<phenotype>.tsv.gz``).
        per_phenotype : bool, default=False

        Returns
        -------
        list of pathlib.Path
        """
        return write_tsv_gz(self.iter_sumstats(), path, per_phenotype=per_phenotype)

    def to_parquet(self, path, per_phenotype=False):
        """Write the summary statistics as Parquet (same layout as :meth:`to_tsv_gz`)."""
        return write_parquet(self.iter_sumstats(), path, per_phenotype=per_phenotype)

    # ------------------------------------------------------------------ plots
    def plot_manhattan(self, modality="t1", ax=None):
        """Manhattan plot of a modality's minimum p across its dimensions; returns the Figure."""
        from .plotting import manhattan

        self._check_fitted()
        self._check_modality(modality)
        return manhattan(self.min_p_[modality], threshold=self.thresholds_[modality], ax=ax,
                         title=f"{modality}: min p over {len(self.modalities_[modality])} dims")

    def plot_miami(self, top="t1", bottom="t2", ax=None):
        """Miami plot: ``top`` modality's minP upwards, ``bottom`` downwards; returns the Figure."""
        from .plotting import miami

        self._check_fitted()
        self._check_modality(top)
        self._check_modality(bottom)
        return miami(self.min_p_[top], self.min_p_[bottom], labels=(top, bottom),
                     thresholds=(self.thresholds_[top], self.thresholds_[bottom]), ax=ax)

    def plot_qq(self, phenotype=None, ax=None):
        """QQ plot with lambda_GC of one phenotype, or of all pooled (default); returns the Figure."""
        from .plotting import qq

        self._check_fitted()
        if phenotype is None:
            nlp = -self._log10_p.ravel()
            lam = float(np.nanmedian(self.lambda_gc_))
            label = f"all {len(self.phenotypes_)} phenotypes (median lambda)"
        else:
            if phenotype not in self.phenotypes_:
                raise ValueError(f"Unknown phenotype {phenotype!r}.")
            nlp = -self._log10_p[:, self.phenotypes_.index(phenotype)]
            lam = float(self.lambda_gc_[phenotype])
            label = phenotype
        return qq(nlp, lambda_gc=lam, ax=ax, title=label)

    def _check_modality(self, modality):
        if modality not in self.modalities_:
            raise ValueError(f"Unknown modality {modality!r}; fitted modalities: "
                             f"{sorted(self.modalities_)}.")
