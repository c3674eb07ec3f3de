"""Gene-based association test: the SNP-wise mean model of MAGMA (de Leeuw et al. 2015).

For gene ``g`` with SNPs ``s = 1..m`` (inside the gene +- ``window``) the statistic is
``T = sum_s z_s^2``. Under the null of no association ``z ~ N(0, R)``, ``R`` the SNPs' LD
correlation matrix (from a reference panel), so ``T ~ sum_k lambda_k chi2_1`` with
``lambda`` the eigenvalues of ``R``; its p-value is :func:`~hcl_sklearn.targets.quadform.quadform_sf`
(Imhof's inversion for ``p >= 1e-5``, an exact inversion through the saddle point below,
relative precision ~1e-10 down to p ~ 1e-300 and beyond in logs).

Across the dimensions of one modality (``t1_000 .. t1_127``) the statistic is
``T = sum_d sum_s z_{s,d}^2``; under the null the z's of a gene's SNPs and a modality's
dimensions, from OLS on shared samples, have covariance ``R_{ss'} rho_{dd'}`` (``rho`` the
correlation of the dimensions), so ``T ~ sum_{i,j} lambda_i mu_j chi2_1`` with ``mu`` the
eigenvalues of ``rho``: an exact null for the combined test, whatever the correlation of
the dimensions (a min-p over dimensions is not uniform). See ``docs/genes.md``.
"""

from __future__ import annotations

import logging
import os
import time
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import special
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions

from ..data.modalities import modality_of
from ..genetics.genotypes import Genotypes, as_genotypes
from .genes import GENE_COLUMNS, _window_bp, assign_snps, load_genes, normalize_chrom
from .quadform import quadform_sf

logger = logging.getLogger(__name__)

__all__ = ["GeneBasedTest", "read_sumstats", "SumstatsColumnError"]

LN10 = np.log(10.0)

#: accepted names (lower case) of each sumstats field, in order of preference
COLUMN_ALIASES = {
    "chrom": ("chromosome", "chrom", "#chrom", "chr", "#chr", "chr_name"),
    "pos": ("base_pair_location", "pos", "bp", "position", "bp_hg19", "base_pair"),
    "variant_id": ("variant_id", "snp", "id", "rsid", "snpid", "markername", "rs_id",
                   "variant"),
    "effect_allele": ("effect_allele", "a1", "allele1", "ea", "tested_allele"),
    "other_allele": ("other_allele", "a2", "allele2", "nea", "omitted",
                     "non_effect_allele", "allele0"),
    "beta": ("beta", "b", "effect"),
    "odds_ratio": ("odds_ratio", "or"),
    "se": ("standard_error", "se", "log(or)_se"),
    "t": ("t_stat", "t", "tstat"),
    "z": ("z", "zscore", "z_stat", "z_score"),
    "p": ("p_value", "p", "pval", "pvalue"),
    "neg_log10_p": ("neg_log10_p", "neg_log10_p_value", "mlog10p"),
    "phenotype": ("phenotype", "trait"),
}


class SumstatsColumnError(ValueError):
    """The summary statistics lack a column the gene test needs; the message lists them."""


def _find(cols, field):
    for name in COLUMN_ALIASES[field]:
        if name in cols:
            return cols[name]
    return None


def read_sumstats(sumstats):
    """Summary statistics in any supported layout -> one standard long frame.

    Parameters
    ----------
    sumstats : pandas.DataFrame, str or path-like
        The package's long layout (:data:`~hcl_sklearn.genetics.gwas.sumstats.SUMSTATS_COLUMNS`,
        e.g. ``CrossModalGWAS.sumstats_``), GWAS-SSF, fastGWA (``CHR SNP POS A1 A2 N AF1
        BETA SE P``), PLINK 2 ``.glm.linear``/``.glm.logistic`` (``#CHROM POS ID REF ALT
        A1 ... BETA|OR SE T_STAT|Z_STAT P``; rows with ``TEST != 'ADD'`` dropped), or a
        file of any of these (``.tsv``/``.txt``, gzipped or not, whitespace- or
        tab-separated; ``.parquet``). Column names are matched case-insensitively
        (:data:`COLUMN_ALIASES`).

    Returns
    -------
    pandas.DataFrame
        ``chrom, pos, variant_id, effect_allele, other_allele, phenotype`` and the
        available of ``beta, se, t, z, p, neg_log10_p``.

    Raises
    ------
    SumstatsColumnError
        Naming every missing field and the names accepted for it.
    """
    if isinstance(sumstats, (str, os.PathLike)):
        path = os.fspath(sumstats)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Summary statistics file not found: {path}")
        if path.lower().endswith(".parquet"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=r"\s+", engine="c", low_memory=False)
    elif isinstance(sumstats, pd.DataFrame):
        frame = sumstats
    else:
        raise TypeError("sumstats must be a DataFrame or the path of a summary-statistics "
                        f"file; got {type(sumstats).__name__}.")
    cols = {str(c).lower(): c for c in frame.columns}
    if "test" in cols:  # PLINK 2: one row per term; keep the additive SNP effect
        frame = frame[frame[cols["test"]].astype(str).str.upper() == "ADD"]
    found = {f: _find(cols, f) for f in COLUMN_ALIASES}
    # PLINK 2: A1 (tested) is ALT or REF; the other allele is the one of REF/ALT it is not
    if found["other_allele"] is None and "ref" in cols and "alt" in cols \
            and found["effect_allele"] is not None:
        a1 = frame[found["effect_allele"]].astype(str)
        other = np.where(a1 == frame[cols["alt"]].astype(str), frame[cols["ref"]],
                         frame[cols["alt"]])
        frame = frame.assign(__other=other)
        found["other_allele"] = "__other"
    missing = []
    for field, label in (("chrom", "chromosome"), ("pos", "base-pair position"),
                         ("variant_id", "variant id"), ("effect_allele", "effect allele"),
                         ("other_allele", "other allele")):
        if found[field] is None:
            missing.append(f"{label} (one of {', '.join(COLUMN_ALIASES[field])})")
    has_sign = any(found[f] is not None for f in ("beta", "odds_ratio", "t", "z"))
    has_z = (found["z"] is not None or found["t"] is not None
             or (found["beta"] is not None or found["odds_ratio"] is not None)
             and (found["se"] is not None or found["p"] is not None
                  or found["neg_log10_p"] is not None))
    if not (has_sign and has_z):
        missing.append("an association statistic: z, t_stat, beta (or OR) with "
                       "standard_error or p_value")
    if missing:
        raise SumstatsColumnError(
            "The summary statistics lack " + "; ".join(missing) + f". Columns present: "
            f"{list(frame.columns)}. Rename them (case does not matter) or pass the "
            "package's long layout (CrossModalGWAS.sumstats_).")
    out = pd.DataFrame({
        "chrom": normalize_chrom(frame[found["chrom"]]),
        "pos": pd.to_numeric(frame[found["pos"]], errors="coerce").to_numpy(),
        "variant_id": frame[found["variant_id"]].astype(str).to_numpy(),
        "effect_allele": frame[found["effect_allele"]].astype(str).str.upper().to_numpy(),
        "other_allele": frame[found["other_allele"]].astype(str).str.upper().to_numpy(),
        "phenotype": (frame[found["phenotype"]].astype(str).to_numpy()
                      if found["phenotype"] is not None else "trait"),
    })
    for field in ("beta", "se", "t", "z", "p", "neg_log10_p"):
        if found[field] is not None:
            out[field] = pd.to_numeric(frame[found[field]], errors="coerce").to_numpy()
    if "beta" not in out and found["odds_ratio"] is not None:
        out["beta"] = np.log(pd.to_numeric(frame[found["odds_ratio"]],
                                           errors="coerce").to_numpy())
    bad = out["pos"].isna()
    if bad.any():
        out = out[~bad]
    out["pos"] = out["pos"].astype(np.int64)
    return out.reset_index(drop=True)


def z_scores(frame, z_from="auto"):
    """z of every row of a :func:`read_sumstats` frame.

    ``'auto'``: a ``z`` column if present; else from the p-value and the sign of the
    effect, ``z = sign * Phi^-1(1 - p/2)`` computed from ``log p`` (``neg_log10_p`` where
    available, so p below 1e-308 stays finite; MAGMA likewise converts p-values), which is
    exactly N(0, 1) under the null for a t-test in a small sample; where no p is usable,
    ``beta / se`` or ``t``. ``'beta_se'``, ``'t'``, ``'p'``: that source only.
    """
    n = len(frame)
    sign = None
    for col in ("z", "t", "beta"):
        if col in frame:
            sign = np.sign(frame[col].to_numpy(dtype=float))
            break
    z = np.full(n, np.nan)

    def from_p():
        logp = np.full(n, np.nan)
        if "neg_log10_p" in frame:
            logp = -frame["neg_log10_p"].to_numpy(dtype=float) * LN10
        if "p" in frame:
            p = frame["p"].to_numpy(dtype=float)
            with np.errstate(divide="ignore"):
                lp = np.where((p > 0) & (p <= 1), np.log(np.clip(p, 1e-320, 1)), np.nan)
            logp = np.where(np.isnan(logp), lp, logp)
        logp = np.minimum(logp, 0.0)
        with np.errstate(invalid="ignore"):
            return -special.ndtri_exp(logp - np.log(2.0)) * sign

    def from_beta_se():
        if "beta" in frame and "se" in frame:
            with np.errstate(divide="ignore", invalid="ignore"):
                return frame["beta"].to_numpy(float) / frame["se"].to_numpy(float)
        return np.full(n, np.nan)

    def from_t():
        return frame["t"].to_numpy(float) if "t" in frame else np.full(n, np.nan)

    if z_from == "auto":
        if "z" in frame:
            z = frame["z"].to_numpy(float)
        for fill in (from_p, from_beta_se, from_t):
            if np.isnan(z).any() and sign is not None:
                z = np.where(np.isnan(z), fill(), z)
    else:
        z = {"p": from_p, "beta_se": from_beta_se, "t": from_t}[z_from]()
    z = np.where(np.isfinite(z), z, np.nan)
    return z


_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def _complement(a):
    return np.array([x.translate(_COMPLEMENT) for x in a], dtype=object)


def align_to_reference(snps, ref):
    """Match sumstats SNPs to reference SNPs and the sign of z to the reference's ``a1``.

    ``snps``: ``chrom, pos, variant_id, effect_allele, other_allele``; ``ref``: a
    :attr:`Genotypes.snps` table. Matched by variant id when most ids are found, else by
    ``chrom:pos``. Same alleles: kept; swapped: z flipped; on the other strand (the
    complements): kept or flipped likewise, except strand-ambiguous pairs (A/T, C/G),
    which can only be taken as they stand (a swapped ambiguous pair is dropped: strand
    and swap cannot be told apart); any other mismatch: dropped.

    Returns
    -------
    ref_pos : ndarray of int (-1: not matched / dropped)
    sign : ndarray of {+1, -1, 0}
    counts : dict
    """
    ref_ids = pd.Index(ref["variant_id"].astype(str))
    ids = snps["variant_id"].astype(str).to_numpy()
    dup_id = ref_ids.duplicated(keep=False)  # ids repeated in the reference: not by id
    pos_by_id = pd.Index(ref_ids[~dup_id]).get_indexer(ids)
    pos_by_id = np.where(pos_by_id >= 0, np.flatnonzero(~dup_id)[pos_by_id.clip(0)], -1)
    key_ref = pd.Index(normalize_chrom(ref["chrom"]) + ":" + ref["pos"].astype(str).to_numpy())
    key = snps["chrom"].astype(str).to_numpy() + ":" + snps["pos"].astype(str).to_numpy()
    dup = key_ref.duplicated(keep=False)
    pos_by_key = pd.Index(key_ref[~dup]).get_indexer(key)
    pos_by_key = np.where(pos_by_key >= 0, np.flatnonzero(~dup)[pos_by_key.clip(0)], -1)
    by = "variant_id" if (pos_by_id >= 0).mean() >= 0.5 else "chrom:pos"
    pos = pos_by_id if by == "variant_id" else pos_by_key
    found = pos >= 0
    ra1 = np.where(found, ref["a1"].astype(str).str.upper().to_numpy()[pos.clip(0)], "")
    ra2 = np.where(found, ref["a2"].astype(str).str.upper().to_numpy()[pos.clip(0)], "")
    ea = snps["effect_allele"].to_numpy(dtype=object)
    oa = snps["other_allele"].to_numpy(dtype=object)
    same = (ea == ra1) & (oa == ra2)
    swap = (ea == ra2) & (oa == ra1)
    cea, coa = _complement(ea), _complement(oa)
    ambiguous = cea == oa
    same_c = (cea == ra1) & (coa == ra2) & ~ambiguous
    swap_c = (cea == ra2) & (coa == ra1) & ~ambiguous
    drop_ambiguous = found & swap & ambiguous
    sign = np.where(same | same_c, 1, np.where((swap | swap_c) & ~ambiguous, -1, 0))
    sign = np.where(found, sign, 0)
    counts = {
        "matched_by": by,
        "n_sumstats": int(len(snps)),
        "n_not_in_reference": int((~found).sum()),
        "n_allele_mismatch": int((found & (sign == 0) & ~drop_ambiguous).sum()),
        "n_ambiguous_dropped": int(drop_ambiguous.sum()),
        "n_flipped": int((sign == -1).sum()),
        "n_matched": int((sign != 0).sum()),
    }
    return np.where(sign != 0, pos, -1), sign, counts


class GeneBasedTest(BaseEstimator):
    """Gene-based test of summary statistics: MAGMA's SNP-wise mean model.

    For every gene the statistic ``sum_s z_s^2`` over the SNPs in the gene +- ``window``
    is tested against its exact null ``sum_k lambda_k chi2_1`` (``lambda``: eigenvalues
    of the SNPs' LD correlation in ``ld_reference``), per phenotype; and, with
    ``combine='modality'``, for every modality (``t1``, ``t2``: prefix of the phenotype
    names) the sum over its dimensions against ``sum lambda_i mu_j chi2_1`` (``mu``:
    eigenvalues of the dimensions' correlation), an exact null for correlated
    dimensions. See the module docstring and ``docs/genes.md``.

    Parameters
    ----------
    window : float or (float, float), default=10
        kb added to each gene (one number: both sides; a pair: below the start, above
        the end). 10 kb is FUMA's default; MAGMA's own default is 0.
    ld_reference : Genotypes or str
        LD reference panel (a :class:`~hcl_sklearn.genetics.Genotypes`, PLINK 1 prefix
        or ``.bgen``), same ancestry as the GWAS; for in-sample LD, the GWAS genotypes.
        Required (the default ``None`` only lets the estimator build without data).
    genes : pandas.DataFrame, optional
        Columns ``chrom, start, end`` (1-based inclusive, the build of the sumstats) and
        optionally ``ensg``, ``symbol``. Default: :func:`load_genes` of ``gene_kind``.
    gene_kind : {'codinglike', 'all'}, default='codinglike'
    combine : {'modality', 'none'}, default='modality'
        ``'modality'``: also the across-dimension test of every modality with two or
        more phenotypes (in :attr:`modality_results_`).
    per_phenotype : bool, default=True
        Test every phenotype (dimension) on its own (``results_``). False, with
        ``combine='modality'``: only the combined test of each modality
        (``modality_results_``; ``results_`` is then empty), e.g. 128 dimensions x 2
        modalities tested as 2 tests per gene instead of 258 (the p-value inversions are
        the test's cost).
    dim_correlation : pandas.DataFrame, optional
        Correlation ``rho`` of the phenotypes (index and columns: phenotype names) under
        the null, e.g. the phenotypes' own correlation on the GWAS samples. Default:
        estimated as the correlation, over all matched SNPs, of the z's of each pair of
        phenotypes (``E[z_d z_d'] = rho_dd'`` per SNP under the null).
    eigen_tol : float, default=1e-6
        Eigenvalues of ``R`` (and of ``R kron rho``) below ``eigen_tol * max`` are taken as
        0: directions of (near-)collinear SNPs. Their share of the null mean is at most
        ``m * eigen_tol`` of the largest eigenvalue, so the p-value does not change
        materially (see docs/genes.md).
    max_snps : int, optional
        Genes with more SNPs keep the ``max_snps`` with the largest reference MAF
        (default: all).
    z_from : {'auto', 'p', 'beta_se', 't'}, default='auto'
        Source of the z-scores (:func:`z_scores`).
    alpha : float, default=0.05
        Family-wise level: ``significant`` is ``p_value < alpha / n_genes`` (Bonferroni
        over the genes tested for that phenotype / modality).
    verbose : int, default=0
        ``> 0``: a progress bar over the genes (tqdm) and a log line of the SNP matching.

    Attributes
    ----------
    results_ : pandas.DataFrame
        One row per gene and phenotype: ``phenotype, gene, ensg, chrom, start, end,
        n_snps, n_eigen, statistic, p_value, neg_log10_p, p_bonferroni, significant,
        top_snp, top_snp_z``; sorted by phenotype and p-value.
    modality_results_ : pandas.DataFrame
        ``combine='modality'``: one row per gene and modality: ``modality, n_dims`` and
        the columns above (``top_snp`` the SNP of the largest ``sum_d z^2``).
    snp_counts_ : dict
        How the sumstats SNPs were matched to the reference (``matched_by``,
        ``n_sumstats``, ``n_not_in_reference``, ``n_allele_mismatch``,
        ``n_ambiguous_dropped``, ``n_flipped``, ``n_matched``, ``n_monomorphic``,
        ``n_in_genes``).
    dim_correlation_ : dict of str to pandas.DataFrame
        ``rho`` used for each modality.
    n_genes_ : int
        Genes with at least one SNP.
    fit_time_ : float
        Seconds.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from hcl_sklearn.datasets import get_1000g_chr22
    >>> from hcl_sklearn.genetics import as_genotypes
    >>> from hcl_sklearn.targets import GeneBasedTest
    >>> g = as_genotypes(get_1000g_chr22())
    >>> rng = np.random.default_rng(0)
    >>> snps = g.snps.iloc[:400]
    >>> sumstats = pd.DataFrame({"CHR": snps.chrom, "SNP": snps.variant_id,
    ...     "POS": snps.pos, "A1": snps.a1, "A2": snps.a2,
    ...     "BETA": rng.normal(size=400), "SE": 1.0})
    >>> test = GeneBasedTest(window=10, ld_reference=g).fit(sumstats)
    >>> set(["gene", "n_snps", "statistic", "p_value"]) <= set(test.results_.columns)
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "window": [Interval(Real, 0, None, closed="left"), tuple, list],
        "ld_reference": "no_validation",
        "genes": [pd.DataFrame, None],
        "gene_kind": [StrOptions({"codinglike", "all"})],
        "combine": [StrOptions({"modality", "none"})],
        "per_phenotype": ["boolean"],
        "dim_correlation": [pd.DataFrame, None],
        "eigen_tol": [Interval(Real, 0, 1, closed="left")],
        "max_snps": [Interval(Integral, 1, None, closed="left"), None],
        "z_from": [StrOptions({"auto", "p", "beta_se", "t"})],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "verbose": ["verbose"],
    }

    def __init__(self, window=10, ld_reference=None, *, genes=None, gene_kind="codinglike",
                 combine="modality", per_phenotype=True, dim_correlation=None,
                 eigen_tol=1e-6, max_snps=None, z_from="auto", alpha=0.05, verbose=0):
        self.window = window
        self.ld_reference = ld_reference
        self.genes = genes
        self.gene_kind = gene_kind
        self.combine = combine
        self.per_phenotype = per_phenotype
        self.dim_correlation = dim_correlation
        self.eigen_tol = eigen_tol
        self.max_snps = max_snps
        self.z_from = z_from
        self.alpha = alpha
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _genes_table(self):
        genes = load_genes(self.gene_kind) if self.genes is None else self.genes
        missing = [c for c in ("chrom", "start", "end") if c not in genes.columns]
        if missing:
            raise ValueError(f"genes lacks columns {missing}; it needs chrom, start, end "
                             "(1-based inclusive, the build of the sumstats).")
        genes = genes.reset_index(drop=True).copy()
        genes["chrom"] = normalize_chrom(genes["chrom"])
        if "symbol" not in genes:
            genes["symbol"] = (genes["ensg"] if "ensg" in genes
                               else genes.index.map(lambda i: f"gene{i}"))
        if "ensg" not in genes:
            genes["ensg"] = genes["symbol"]
        return genes[GENE_COLUMNS]

    def _z_matrix(self, frame):
        """Wide z (unique SNPs x phenotypes) and the SNP table."""
        z = z_scores(frame, self.z_from)
        frame = frame.assign(z_=z)
        phenotypes = pd.unique(frame["phenotype"])
        key = (frame["variant_id"] + "\t" + frame["chrom"] + ":" + frame["pos"].astype(str)
               + "\t" + frame["effect_allele"] + "\t" + frame["other_allele"])
        codes, uniq = pd.factorize(key)
        first = pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()
        snps = frame.iloc[first][["chrom", "pos", "variant_id", "effect_allele",
                                  "other_allele"]].reset_index(drop=True)
        pheno_codes = pd.Index(phenotypes).get_indexer(frame["phenotype"])
        Z = np.full((len(uniq), len(phenotypes)), np.nan)
        Z[codes, pheno_codes] = frame["z_"].to_numpy()
        return Z, snps, [str(p) for p in phenotypes]

    def fit(self, sumstats, y=None):
        """Test every gene.

        Parameters
        ----------
        sumstats : pandas.DataFrame, str or path-like
            See :func:`read_sumstats`.
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        t0 = time.perf_counter()
        _window_bp(self.window)
        if not self.per_phenotype and self.combine != "modality":
            raise ValueError("per_phenotype=False leaves only the per-modality tests: use it "
                             "with combine='modality'.")
        if self.ld_reference is None:
            raise ValueError(
                "GeneBasedTest needs an LD reference: pass ld_reference= a Genotypes, a "
                "PLINK 1 prefix or a .bgen path of the same ancestry (in-sample: the GWAS "
                "genotypes; e.g. hcl_sklearn.datasets.get_1000g_chr22()).")
        ref = as_genotypes(self.ld_reference, where="ld_reference")
        frame = read_sumstats(sumstats)
        Z, snps, phenotypes = self._z_matrix(frame)
        ref_pos, sign, counts = align_to_reference(snps, ref.snps)
        if counts["n_matched"] == 0:
            raise ValueError(
                f"None of the {counts['n_sumstats']} sumstats SNPs is in the LD reference "
                f"({ref.n_snps} SNPs; matched by variant id and by chrom:pos, alleles "
                "checked). Check the genome build, the chromosome labels and the variant "
                "ids of both.")
        keep = ref_pos >= 0
        Z = Z[keep] * sign[keep, None]
        snps = snps[keep].reset_index(drop=True)
        ref_pos = ref_pos[keep]
        # reference order (so a gene's SNPs are a near-contiguous reference range)
        order = np.argsort(ref_pos, kind="stable")
        Z, snps, ref_pos = Z[order], snps.iloc[order].reset_index(drop=True), ref_pos[order]
        genes = self._genes_table()
        ref_snps = ref.snps.iloc[ref_pos].reset_index(drop=True)
        pairs = assign_snps(ref_snps, genes, window=self.window)
        counts["n_in_genes"] = int(pd.unique(pairs["snp_index"]).size)
        counts["n_monomorphic"] = 0
        self.snp_counts_ = counts
        msg = (f"gene test: {counts['n_matched']} of {counts['n_sumstats']} SNPs matched to "
               f"the LD reference by {counts['matched_by']} ({counts['n_flipped']} flipped; "
               f"dropped: {counts['n_not_in_reference']} not in the reference, "
               f"{counts['n_allele_mismatch']} allele mismatches, "
               f"{counts['n_ambiguous_dropped']} strand-ambiguous swaps); "
               f"{counts['n_in_genes']} in a gene +- window.")
        (logger.info if self.verbose else logger.debug)(msg)
        if len(pairs) == 0:
            raise ValueError("No matched SNP lies in a gene +- window: check the genome "
                             "build (genes are GRCh37) and the window.")

        modalities = {}
        if self.combine == "modality":
            for j, p in enumerate(phenotypes):
                m = modality_of(p)
                if m:
                    modalities.setdefault(m, []).append(j)
            modalities = {m: js for m, js in modalities.items() if len(js) >= 2}
        self.dim_correlation_ = {m: self._rho(Z, [phenotypes[j] for j in js], js)
                                 for m, js in modalities.items()}
        mu = {m: self._eig(r.to_numpy()) for m, r in self.dim_correlation_.items()}

        rows, mrows = [], []
        gene_index = pairs["gene_index"].to_numpy()
        snp_index = pairs["snp_index"].to_numpy()
        bounds = np.flatnonzero(np.r_[True, gene_index[1:] != gene_index[:-1], True])
        cache = self._ref_cache = _ReferenceCache(ref, ref_pos)
        iterator = range(len(bounds) - 1)
        if self.verbose:
            from tqdm.auto import tqdm
            iterator = tqdm(iterator, desc="genes", unit="gene")
        for b in iterator:
            g = gene_index[bounds[b]]
            s_idx = snp_index[bounds[b]:bounds[b + 1]]
            X = cache.get(s_idx)  # standardized, (n_ref, m); NaN columns: monomorphic
            poly = np.isfinite(X).all(0)
            s_idx, X = s_idx[poly], X[:, poly]
            if self.max_snps is not None and len(s_idx) > self.max_snps:
                maf = cache.maf(s_idx)
                top = np.sort(np.argsort(-maf, kind="stable")[:self.max_snps])
                s_idx, X = s_idx[top], X[:, top]
            if len(s_idx) == 0:
                continue
            R = (X.T @ X) / X.shape[0]
            lam = self._eig(R)
            Zg = Z[s_idx]
            info = genes.iloc[g]
            if self.per_phenotype:
                rows.extend(self._test_gene(info, snps, s_idx, Zg, lam, phenotypes))
            for m, js in modalities.items():
                mrows.extend(self._test_modality(info, snps, s_idx, Zg[:, js], lam, mu[m], m))
        self.results_ = self._finish(pd.DataFrame(rows), "phenotype")
        self.modality_results_ = (self._finish(pd.DataFrame(mrows), "modality")
                                  if self.combine == "modality" else None)
        tested = [r["gene_key"] for r in (rows or mrows)]
        self.n_genes_ = len(set(tested))
        self.results_ = self.results_.drop(columns="gene_key", errors="ignore")
        if self.modality_results_ is not None:
            self.modality_results_ = self.modality_results_.drop(columns="gene_key",
                                                                 errors="ignore")
        del self._ref_cache
        self.phenotypes_ = phenotypes
        self.fit_time_ = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ pieces
    def _eig(self, M):
        w = np.linalg.eigvalsh(M)
        return w[w > self.eigen_tol * w.max()]

    def _rho(self, Z, names, js):
        if self.dim_correlation is not None:
            missing = [n for n in names if n not in self.dim_correlation.index
                       or n not in self.dim_correlation.columns]
            if missing:
                raise ValueError(f"dim_correlation lacks phenotypes {missing[:5]} "
                                 f"({len(missing)} in all); give the correlation of every "
                                 "phenotype of a modality, or leave it None to estimate it.")
            return self.dim_correlation.loc[names, names].astype(float)
        Zm = Z[:, js]
        Zm = Zm[np.isfinite(Zm).all(1)]
        if len(Zm) < 2 * len(js):
            raise ValueError(f"Too few SNPs ({len(Zm)}) with z for all {len(js)} dimensions "
                             "to estimate their correlation; pass dim_correlation.")
        # E[z_d z_d'] = rho_dd' per null SNP (no centring: z has mean 0 under the null)
        C = Zm.T @ Zm / len(Zm)
        d = np.sqrt(np.diag(C))
        return pd.DataFrame(C / np.outer(d, d), index=names, columns=names)

    def _finish(self, res, by):
        if res.empty:
            return res
        n = res.groupby(by)["gene_key"].transform("nunique").to_numpy()
        res["p_bonferroni"] = np.minimum(1.0, res["p_value"] * n)
        res["significant"] = res["p_value"] < self.alpha / n
        first = [by] + (["n_dims"] if by == "modality" else [])
        cols = first + ["gene", "ensg", "chrom", "start", "end", "n_snps", "n_eigen",
                        "statistic", "p_value", "neg_log10_p", "p_bonferroni",
                        "significant", "top_snp", "top_snp_z", "gene_key"]
        res = res[cols].sort_values([by, "neg_log10_p"], ascending=[True, False],
                                    kind="stable")
        return res.reset_index(drop=True)

    @staticmethod
    def _row(info, snps, s_idx, stat, log_p, n_eigen, top, top_z):
        return {"gene": info["symbol"], "ensg": info["ensg"], "chrom": info["chrom"],
                "start": int(info["start"]), "end": int(info["end"]),
                "n_snps": int(len(s_idx)), "n_eigen": int(n_eigen),
                "statistic": float(stat), "p_value": float(np.exp(log_p)),
                "neg_log10_p": float(-log_p / LN10),
                "top_snp": snps["variant_id"].iloc[s_idx[top]], "top_snp_z": float(top_z),
                "gene_key": info.name}

    def _test_gene(self, info, snps, s_idx, Zg, lam, phenotypes):
        out = []
        finite = np.isfinite(Zg)
        complete = finite.all(0)
        stat = np.where(complete, np.nansum(Zg ** 2, axis=0), np.nan)
        if complete.any():
            log_p = np.full(len(phenotypes), np.nan)
            log_p[complete] = quadform_sf(stat[complete], lam, log=True)
        for j, name in enumerate(phenotypes):
            if not finite[:, j].any():
                continue
            if complete[j]:
                lj, lp, st, sub = lam, log_p[j], stat[j], s_idx
                zj = Zg[:, j]
            else:  # this phenotype lacks some of the gene's SNPs: their own LD
                ok = finite[:, j]
                sub, zj = s_idx[ok], Zg[ok, j]
                X = self._cache.get(sub)
                lj = self._eig(X.T @ X / X.shape[0])
                st = float(np.sum(zj ** 2))
                lp = float(quadform_sf(st, lj, log=True))
            top = int(np.argmax(np.abs(zj)))
            row = self._row(info, snps, sub, st, lp, len(lj), top, zj[top])
            row["phenotype"] = name
            out.append(row)
        return out

    def _test_modality(self, info, snps, s_idx, Zm, lam, mu, modality):
        ok = np.isfinite(Zm).all(1)
        if not ok.any():
            return []
        if not ok.all():  # SNPs missing in some dimension: left out of the combined test
            s_idx, Zm = s_idx[ok], Zm[ok]
            X = self._cache.get(s_idx)
            lam = self._eig(X.T @ X / X.shape[0])
        w = np.outer(lam, mu).ravel()
        w = w[w > self.eigen_tol * w.max()]
        stat = float(np.sum(Zm ** 2))
        lp = float(quadform_sf(stat, w, log=True))
        per_snp = (Zm ** 2).sum(1)
        top = int(np.argmax(per_snp))
        row = self._row(info, snps, s_idx, stat, lp, len(w), top, np.sqrt(per_snp[top]))
        row["modality"] = modality
        row["n_dims"] = int(Zm.shape[1])
        return [row]

    @property
    def _cache(self):
        return self.__dict__["_ref_cache"]


class _ReferenceCache:
    """Standardized reference genotypes of the matched SNPs, read a range at a time."""

    def __init__(self, ref: Genotypes, ref_pos, chunk=4096):
        self.ref = ref
        self.ref_pos = ref_pos  # matched SNP i -> reference SNP position (sorted)
        self.chunk = chunk
        self.lo = self.hi = 0
        self.X = None
        self._sd = None

    def _load(self, lo, hi):
        X = self.ref.read(snps=self.ref_pos[lo:hi], standardize=False)
        mean = X.mean(0)
        sd = X.std(0)
        self._af = mean / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            self.X = (X - mean) / np.where(sd > 0, sd, np.nan)
        self.lo, self.hi = lo, hi

    def get(self, idx):
        lo, hi = int(idx.min()), int(idx.max()) + 1
        if self.X is None or lo < self.lo or hi > self.hi:
            self._load(lo, max(hi, min(lo + self.chunk, len(self.ref_pos))))
        return self.X[:, idx - self.lo]

    def maf(self, idx):
        self.get(idx)
        af = self._af[idx - self.lo]
        return np.minimum(af, 1 - af)
