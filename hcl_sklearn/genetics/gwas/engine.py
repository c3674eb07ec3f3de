"""The GWAS engine: association scan, lambda_GC, loci per modality and their overlap, writers
and plots (no scikit-learn import; :mod:`.estimator` adds the estimator API)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pandas as pd
from scipy import special

from ..._base import resolve_device
from ...data.covariates import covariate_basis, prepare_covariates
from ...data.modalities import modality_of
from ...data.phenotypes import missingness_patterns

from ._bed import bed_source
from .association import AssociationKernel
from .scan import BlockScan, ScanResults, run_blocks
from .loci import _LD, _lead_table, clump_positions, loci_from_clumps, overlap_loci
from .sumstats import long_frame, write_sumstats

logger = logging.getLogger(__name__)

__all__ = ["GWASEngine"]

#: median of chi2 with 1 df; ``special.chdtri(1, p)`` is scipy.stats' ``chi2.isf(p, 1)``
_CHI2_MEDIAN = special.chdtri(1, 0.5)


_CONTROLLER = []
# bytes of float genotypes decoded and multiplied at a time by each thread (at least
# 256 SNPs: each product also packs the (n_samples, P + K + 1) right-hand side)
_SUB_BLOCK_BYTES = 2 ** 24
_MIN_SUB_SNPS = 256


def _blas():
    """A cached threadpoolctl controller (finding the libraries takes milliseconds)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _group_of(column):
    """GWAS group of a phenotype column: its modality (:func:`~hcl_sklearn.data.modality_of`),
    or the column itself when it has none (a stand-alone phenotype is its own group)."""
    return modality_of(column) or str(column)


class GWASEngine:
    """The computation of :class:`CrossModalGWAS` without scikit-learn's estimator API.

    :class:`CrossModalGWAS` is this class with scikit-learn's ``BaseEstimator`` (parameter
    validation, ``get_params`` / ``set_params``, ``clone``); the parameters, fitted
    attributes and methods are documented there. ``hcl gwas`` uses the engine directly,
    so that a command-line run does not import scikit-learn (whose import loads
    ``scipy.stats``: one to two seconds of start-up); its arguments are checked by the
    command line instead.
    """

    def __init__(self, genotypes=None, *, model="ols", grm=None, loco=True, h2=None,
                 covariates=None, covariate_policy=None,
                 alpha=5e-8, maf=0.01, block_size=2048, device="auto", backend=None,
                 clump_r2=0.1, clump_window=250_000, clump_p2=1e-2, locus_pad=125_000,
                 overlap=("t1", "t2"), dtype="float64", n_jobs=None, out_dir=None,
                 cluster=None, verbose=0):
        self.genotypes = genotypes
        self.model = model
        self.grm = grm
        self.loco = loco
        self.h2 = h2
        self.covariates = covariates
        self.covariate_policy = covariate_policy
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
        self.out_dir = out_dir
        self.cluster = cluster
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _device(self):
        return resolve_device(self.device)

    def _check_params(self):
        """What the parameter constraints cannot say: device and backend together, the
        overlap pair, the model's own parameters."""
        device = self._device()
        backend = self.backend or ("numpy" if device == "cpu" else "torch")
        if backend == "numpy" and device != "cpu":
            raise ValueError(f"backend='numpy' runs on device='cpu' only; got "
                             f"device={self.device!r}. Use backend='torch'.")
        if backend == "torch" and device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device={self.device!r} but torch sees no CUDA GPU; "
                                 "use device='cpu'.")
        if len(self.overlap) != 2:
            raise ValueError(f"overlap must be a pair of modality names; got {self.overlap!r}.")
        if self.model == "ols" and (self.grm is not None or self.h2 is not None):
            raise ValueError("grm= and h2= belong to the mixed model; set model='lmm' "
                             "(or drop them for OLS).")
        if self.model == "lmm" and backend != "numpy":
            raise ValueError("model='lmm' runs on the numpy backend (device='cpu') for "
                             f"now; got backend={backend!r}, device={self.device!r}.")
        if self.genotypes is None:
            raise TypeError("CrossModalGWAS needs genotypes: a Genotypes, a PLINK 1 prefix or "
                            "a .bgen path, e.g. CrossModalGWAS('data/chr22').")
        return backend

    def _threads(self):
        """Threads for the SNP scan: ``n_jobs``, else the BLAS library's own setting."""
        if self.n_jobs is not None:
            return max(1, int(self.n_jobs))
        return max([1] + [int(i.get("num_threads") or 1) for i in _blas().info()
                          if i.get("user_api") == "blas"])

    def _open_genotypes(self):
        from .. import as_genotypes

        return as_genotypes(self.genotypes)

    @staticmethod
    def _check_frame(X, what):
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{what} must be a pandas DataFrame indexed by subject id; "
                            f"got {type(X).__name__}.")
        bad = [c for c, dt in X.dtypes.items() if not pd.api.types.is_numeric_dtype(dt)]
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
        backend = self._check_params()
        n_threads = self._threads()
        # the O(N (P + K) K) set-up and the loci use one BLAS thread (small products
        # are slower with more threads, much slower on a busy machine); the SNP scan
        # uses n_threads
        with _blas().limit(limits=1, user_api="blas"):
            return self._fit(Y, backend, n_threads)

    def _fit(self, Y, backend, n_threads):
        clock = [time.perf_counter()]
        geno = self._open_genotypes()
        Y = self._check_frame(Y, "Y")
        if Y.shape[1] == 0 or Y.shape[0] == 0:
            raise ValueError(f"Y is empty (shape {Y.shape}); give one column per phenotype.")
        Yv = Y.to_numpy()                                # one float64 copy of Y
        inf = np.isinf(Yv)
        if inf.any():
            bad = Y.columns[inf.any(axis=0)].tolist()[:10]
            raise ValueError(f"Y columns {bad} contain inf; set those values to NaN.")
        Y.columns = Y.columns.astype(str)
        col_names = Y.columns.tolist()
        ids = Y.index
        geno_rows = geno.align(ids)  # SampleMismatchError (a ValueError) names the ids
        del geno_rows
        Cv, cov_names, complete = prepare_covariates(self.covariates, ids,
                                                     self.covariate_policy)
        observed = ~np.isnan(Yv) & complete[:, None]
        empty = Y.columns[observed.sum(axis=0) == 0].tolist()
        if empty:
            raise ValueError(f"Phenotypes {empty[:10]} have no observed value with complete "
                             "covariates; drop them.")
        # union of analysed samples, then one group per missingness pattern
        union = observed.any(axis=1)
        union_ids = ids[union]
        obs_u = observed[union]
        groups = []
        Cu = Cv[union]
        Yu = Yv[union]
        for rows_mask, cols in missingness_patterns(obs_u):
            rows = np.flatnonzero(rows_mask)
            cols = cols.tolist()
            names = [col_names[j] for j in cols]
            Q = covariate_basis(Cu[rows], cov_names, self.covariate_policy)
            try:
                kern = AssociationKernel(Yu[np.ix_(rows, cols)], Q, backend=backend,
                                         device=self._device(), dtype=self.dtype)
            except ValueError as exc:
                raise ValueError(f"Phenotypes {names[:10]}: {exc}") from exc
            if kern.constant.any():
                const = [names[k] for k in np.flatnonzero(kern.constant)]
                raise ValueError(f"Phenotypes {const[:10]} are constant after regressing out "
                                 "the covariates (no variance to associate); drop them.")
            groups.append({"cols": np.asarray(cols), "rows": rows,
                           "all_rows": rows.size == union.sum(), "kernel": kern,
                           "Y": Yu[np.ix_(rows, cols)] if self.model == "lmm" else None,
                           "Q": Q})
        # p-value tables (one per df) built while the first blocks are multiplied
        tables = threading.Thread(
            target=lambda: [g["kernel"].log_p_table() for g in groups], daemon=True)
        tables.start()
        logger.info("GWAS of %d phenotypes on %d subjects (%d missingness patterns), "
                    "%d covariates, %d SNPs", Y.shape[1], len(union_ids), len(groups),
                    Cv.shape[1], geno.n_snps)

        P, M = Y.shape[1], geno.n_snps
        # all genotyped samples in file order: read without a row index (faster)
        same_rows = len(union_ids) == geno.n_samples and union_ids.equals(geno.iid)
        rows_u = None if same_rows else geno.align(union_ids)
        n_u = len(union_ids)
        bed = bed_source(geno)
        # decode + product in sub-blocks whose float genotypes stay in cache
        sub = max(_MIN_SUB_SNPS, _SUB_BLOCK_BYTES // (8 * max(n_u, 1)))
        # units of work: at most block_size SNPs, at least ~8 per thread (balance)
        n_par = n_threads if backend == "numpy" else 1
        bs = int(min(self.block_size, max(sub, -(-M // (8 * n_par)))))
        store = None
        if self.out_dir is not None:      # block boundaries must not depend on the threads
            bs = int(self.block_size)
            store = self._block_store(geno, Y, bs, backend)
        sub = min(sub, bs)
        sub = -(-bs // -(-bs // sub))                   # equal sub-blocks
        n_workers = min(n_par, -(-M // bs))
        dtype = np.float32 if str(self.dtype) == "float32" else np.float64
        # per modality, the minimum p across its dimensions (for the loci), per block
        self.phenotypes_ = col_names
        self.modalities_ = {}
        for c in self.phenotypes_:
            self.modalities_.setdefault(_group_of(c), []).append(c)
        col_of = {c: j for j, c in enumerate(col_names)}
        mod_cols = []
        for cols in self.modalities_.values():
            j = np.array([col_of[c] for c in cols])
            contiguous = bool(np.all(np.diff(j) == 1))
            mod_cols.append(slice(j[0], j[-1] + 1) if contiguous else j)

        # result arrays: every row of a block is written by the group(s) owning its
        # columns; rows of SNPs that fail the QC are dropped at the end
        results = ScanResults.empty(M, P, len(groups), len(mod_cols))
        clock.append(time.perf_counter())
        segments = ([(0, M, None)] if self.model == "ols" else
                    self._lmm_segments(geno, union_ids, groups, n_threads))
        qc = {"mono": 0, "low": 0}
        for lo, hi, label in segments:
            starts = list(range(lo, hi, bs))
            scan = BlockScan(geno, groups, results, bed=bed, rows=rows_u, n_rows=n_u,
                             block_size=bs, sub_block=sub, dtype=dtype, maf=self.maf,
                             mod_cols=mod_cols, end=hi)
            limits = _blas().limit(limits=1 if n_workers > 1 else n_threads,
                                   user_api="blas")
            try:
                if self.cluster is None:
                    part = run_blocks(scan, starts, n_workers=min(n_workers, len(starts)),
                                      verbose=self.verbose, store=store)
                else:
                    from .distributed import run_blocks_distributed

                    tables.join()            # the p-value tables travel with the kernels
                    part = run_blocks_distributed(scan, starts, self.cluster, store=store,
                                                  verbose=self.verbose)
            finally:
                limits.restore_original_limits()
            qc["mono"] += part["mono"]
            qc["low"] += part["low"]
        beta, se, tst, lp = results.beta, results.se, results.t, results.log10_p
        freq, tested = results.freq, results.tested
        min_lp, min_at = results.min_lp, results.min_at
        clock.append(time.perf_counter())
        n_mono, n_maf = qc["mono"], qc["low"]
        logger.info("SNPs: %d monomorphic and %d with MAF < %g skipped; %d tested.",
                    n_mono, n_maf, self.maf, int(tested.sum()))
        self.snp_qc_ = {"n_snps_in": int(M), "n_monomorphic": n_mono, "n_low_maf": n_maf,
                        "n_tested": int(tested.sum())}
        self._geno = geno
        # LD for the clumping: the analysed samples (None: all, in file order, read
        # without a row index)
        self._samples = None if same_rows else union_ids
        self._tested_pos = np.flatnonzero(tested)
        if tested.all():                             # no copy when every SNP is tested
            self.snps_ = geno.snps.reset_index(drop=True)
            self._beta, self._se, self._t, self._log10_p = beta, se, tst, lp
            self._freq = freq
        else:
            self.snps_ = geno.snps.iloc[self._tested_pos].reset_index(drop=True)
            self._beta, self._se, self._t, self._log10_p = (
                a[tested] for a in (beta, se, tst, lp))
            self._freq = freq[tested]
            min_lp, min_at = min_lp[tested], min_at[tested]
        self._group_of = np.empty(P, dtype=np.intp)
        n_samp, dfs = np.empty(P, dtype=np.int64), np.empty(P, dtype=np.int64)
        for gi, grp in enumerate(groups):
            self._group_of[grp["cols"]] = gi
            n_samp[grp["cols"]] = grp["rows"].size
            dfs[grp["cols"]] = grp["kernel"].df
        self.n_samples_ = pd.Series(n_samp, index=self.phenotypes_, name="n")
        self.df_ = pd.Series(dfs, index=self.phenotypes_, name="df")
        # lambda_GC (numpy's partition releases the GIL) alongside the loci
        lam = {}
        th = threading.Thread(target=lambda: lam.setdefault("v", self._lambda_gc(self._log10_p)))
        th.start()
        try:
            self._find_loci(min_lp, min_at)
        finally:
            th.join()
        if "v" not in lam:                            # the thread failed: say why here
            self._lambda_gc(self._log10_p)
        self.lambda_gc_ = pd.Series(lam["v"], index=self.phenotypes_, name="lambda_gc")
        clock.append(time.perf_counter())
        t_setup, t_scan, t_loci = np.diff(clock)
        logger.debug("fit: set-up %.3f s, scan %.3f s (%d threads), loci and lambda_GC "
                     "%.3f s", t_setup, t_scan, n_workers, t_loci)
        return self

    def _block_store(self, geno, Y, bs, backend):
        from .checkpoint import BlockStore, fingerprint

        cov = self.covariates
        if isinstance(cov, pd.Series):
            cov = cov.to_frame()
        grm = None
        if self.grm is not None:
            g = self.grm.to_numpy(dtype=float)
            grm = [list(self.grm.index.astype(str)[:3]), g.shape[0],
                   float(np.trace(g)), float(g.sum())]
        settings = {"model": self.model, "loco": bool(self.loco),
                    "h2": None if self.h2 is None else np.atleast_1d(self.h2).tolist(),
                    "maf": float(self.maf), "dtype": str(self.dtype), "block_size": bs,
                    "covariate_policy": repr(self.covariate_policy), "grm": grm,
                    "backend": backend}
        store = BlockStore(self.out_dir, fingerprint(geno, Y, cov, settings)).open()
        self.block_store_ = store
        return store

    def _lmm_segments(self, geno, union_ids, groups, n_threads):
        """Yield ``(start, stop, label)`` SNP ranges, with each group's mixed-model kernel
        for that range set in ``groups`` (one range per chromosome with LOCO, else one);
        records the null models in ``h2_null_``."""
        from .lmm import LMMKernel, LocoGRM

        chrom = geno.snps["chrom"].astype(str).to_numpy()
        codes, labels = pd.factorize(chrom)
        M = len(chrom)
        bounds = np.flatnonzero(np.diff(codes)) + 1
        starts = np.r_[0, bounds]
        stops = np.r_[bounds, M]
        if len(starts) != len(labels):
            raise ValueError("model='lmm' needs the SNPs sorted by chromosome (each "
                             "chromosome one run in the .bim); sort them, e.g. plink2 "
                             "--make-bed --sort-vars.")
        cols_h2 = {}
        n_samples = len(union_ids)
        h2_fixed = None
        if self.h2 is not None:
            h2_fixed = np.broadcast_to(np.asarray(self.h2, dtype=np.float64),
                                       (len(self.phenotypes_),))

        def kernels(K):
            for grp in groups:
                rows = grp["rows"]
                Kg = K if grp["all_rows"] else K[np.ix_(rows, rows)]
                fixed = None if h2_fixed is None else h2_fixed[grp["cols"]]
                with _blas().limit(limits=n_threads, user_api="blas"):
                    kern = LMMKernel(grp["Y"], grp["Q"], Kg, h2=fixed, dtype=self.dtype)
                kern._log_p = grp["kernel"].log_p_table()   # same df as the OLS kernel
                grp["kernel"] = kern
            h2 = np.empty(len(self.phenotypes_))
            for grp in groups:
                h2[grp["cols"]] = grp["kernel"].h2
            return h2

        if self.grm is not None:
            from ..grm import check_grm

            Kv, ids = check_grm(self.grm, name="grm", psd="skip")
            pos = ids.get_indexer(union_ids)
            if (pos < 0).any():
                miss = union_ids[pos < 0][:5].tolist()
                raise ValueError(f"grm lacks {int((pos < 0).sum())} of the {n_samples} "
                                 f"analysed subjects, e.g. {miss}; give a GRM of all of them.")
            cols_h2["all"] = kernels(Kv[np.ix_(pos, pos)])
            self.h2_null_ = pd.DataFrame(cols_h2, index=self.phenotypes_)
            yield 0, M, "all"
            return
        logger.info("Mixed model: GRM of %d subjects from the genotypes (%s)", n_samples,
                    "LOCO" if self.loco else "all chromosomes")
        with _blas().limit(limits=n_threads, user_api="blas"):
            grms = LocoGRM(geno, union_ids, codes, maf=self.maf, cluster=self.cluster,
                           verbose=self.verbose)
        if grms.n_snps == 0:
            raise ValueError(f"No SNP with MAF >= {self.maf} to build the GRM.")
        if not self.loco:
            cols_h2["all"] = kernels(grms.full())
            self.h2_null_ = pd.DataFrame(cols_h2, index=self.phenotypes_)
            yield 0, M, "all"
            return
        if len(labels) < 2:
            raise ValueError(f"loco=True needs SNPs on at least two chromosomes; the "
                             f"genotypes have only chromosome {labels[0]!r}. Use "
                             "loco=False (one GRM of all SNPs) or add chromosomes.")
        for code, (lo, hi) in enumerate(zip(starts, stops)):
            with _blas().limit(limits=n_threads, user_api="blas"):
                K = grms.without(code)
            cols_h2[str(labels[code])] = kernels(K)
            del K
            self.h2_null_ = pd.DataFrame(cols_h2, index=self.phenotypes_)
            yield int(lo), int(hi), str(labels[code])

    @staticmethod
    def _lambda_gc(log10_p):
        """median(chi2_1 quantile of p) / 0.4549 per column; the median is taken on p
        (monotone), so only the one or two middle values are transformed."""
        n_snp, n_ph = log10_p.shape
        lam = np.full(n_ph, np.nan)
        nan_cols = np.isnan(log10_p).any(axis=0) if n_snp else np.ones(n_ph, bool)
        full = np.flatnonzero(~nan_cols)
        if full.size:                               # all columns at once
            X = log10_p if full.size == n_ph else log10_p[:, full]
            k = n_snp // 2
            part = np.partition(X, k, axis=0)       # one kth: much faster than two
            mids = part[[k]] if n_snp % 2 else np.stack([part[:k].max(axis=0), part[k]])
            lam[full] = special.chdtri(1, np.power(10.0, mids)).mean(axis=0) / _CHI2_MEDIAN
        for j in np.flatnonzero(nan_cols):
            v = log10_p[:, j]
            v = v[~np.isnan(v)]
            n = v.size
            if n == 0:
                continue
            k = n // 2
            mid = np.partition(v, [k - 1, k] if n > 1 else [k])
            mids = mid[[k]] if n % 2 else mid[[k - 1, k]]
            lam[j] = special.chdtri(1, np.power(10.0, mids)).mean() / _CHI2_MEDIAN
        return lam

    # ------------------------------------------------------------------ loci
    def _find_loci(self, min_lp, min_at):
        """Loci of each modality from its per-SNP minimum ``log10 p`` (``min_lp``, one
        column per modality) and the dimension giving it (``min_at``)."""
        self.thresholds_, self.min_p_, self.leads_, self.loci_ = {}, {}, {}, {}
        snps = self.snps_
        # the frames reuse the snps_ columns (no string conversion per modality)
        chrom_s, vid_s = snps["chrom"], snps["variant_id"]
        chrom = pd.factorize(chrom_s)[0]             # integer codes for the clumping
        bp = snps["pos"].to_numpy(dtype=np.int64)
        ld = _LD(self._geno, self._samples)          # one LD reader for all modalities
        for mi, (mod, cols) in enumerate(self.modalities_.items()):
            mlp, best = min_lp[:, mi], min_at[:, mi]
            # no p-value at all (inf from the NaN filling): NaN
            mnlp = np.where(mlp == np.inf, np.nan, -mlp)
            thr = self.alpha / len(cols)
            self.thresholds_[mod] = thr
            mp = pd.DataFrame({
                "chromosome": chrom_s,
                "base_pair_location": bp,
                "variant_id": vid_s,
                "neg_log10_p": mnlp,
                "p_value": np.power(10.0, -mnlp),
                "phenotype": pd.Categorical.from_codes(best, categories=cols),
            })
            self.min_p_[mod] = mp
            clump_of, leads = clump_positions(
                chrom, bp, mnlp, self._tested_pos,
                self._geno, samples=self._samples, p1=thr, p2=max(self.clump_p2, thr),
                r2=self.clump_r2, window=int(self.clump_window), ld=ld)
            lead_tab = _lead_table(mp, clump_of, leads, thr)
            lead_tab["phenotype"] = np.asarray(cols, dtype=object)[best[leads]]
            self.leads_[mod] = lead_tab
            self.loci_[mod] = loci_from_clumps(lead_tab, pad=int(self.locus_pad))
            logger.info("Modality %s: %d dims, threshold %.3g, %d clumps, %d loci", mod,
                        len(cols), thr, len(lead_tab), len(self.loci_[mod]))
        a, b = self.overlap
        self.overlap_ = (overlap_loci(self.loci_[a], self.loci_[b], names=(a, b))
                         if a in self.loci_ and b in self.loci_ else None)

    # ------------------------------------------------------------------ results
    def _check_fitted(self):
        if not hasattr(self, "snps_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. "
                                 "Call 'fit' with the phenotypes first.")

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

    def _write(self, path, format, per_phenotype, n_jobs):
        self._check_fitted()
        return write_sumstats(path, self.snps_, self.phenotypes_, self._beta, self._se,
                              self._t, self._log10_p, self._freq, self._group_of,
                              self.n_samples_.to_numpy(), format=format,
                              per_phenotype=per_phenotype, n_jobs=n_jobs)

    def to_tsv_gz(self, path, per_phenotype=False, *, n_jobs=None):
        """Write the summary statistics as gzip TSV (one long file or one per phenotype).

        Columns follow the GWAS-SSF standard (``chromosome, base_pair_location,
        effect_allele, other_allele, beta, standard_error, p_value,
        effect_allele_frequency, n, variant_id``), then ``t_stat``, ``neg_log10_p`` and,
        in the long file, ``phenotype``. Floats have 7 significant digits; ``p_value``
        is written from ``log10 p``, so it stays exact below float64's 1e-308.

        Parameters
        ----------
        path : str or path-like
            File path, or a directory when ``per_phenotype=True``
            (``<dir>/<phenotype>.tsv.gz``).
        per_phenotype : bool, default=False
        n_jobs : int or None, default=None
            Threads rendering and compressing the text (None: the usable cores).

        Returns
        -------
        list of pathlib.Path
        """
        return self._write(path, "tsv.gz", per_phenotype, n_jobs)

    def to_parquet(self, path, per_phenotype=False, *, n_jobs=None):
        """Write the summary statistics as Parquet (columns as :meth:`to_tsv_gz`, float64
        values, repeated strings dictionary-encoded)."""
        return self._write(path, "parquet", per_phenotype, n_jobs)

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
