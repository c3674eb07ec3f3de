"""The end-to-end demo behind ``hcl demo``: simulate, train, embed, test genetically, report.

Stages (each a function of the previous stages' results):

1. **simulate** a paired T1/T2 cohort on the real MNI152 template with real 1000 Genomes
   chr22 genotypes and planted heritable factors (:func:`hcl_sklearn.datasets.make_paired_cohort`);
2. **train** the momentum-contrastive embedder and the autoencoder baseline on a training split;
3. **embed** every subject with the reference protocol: the encoder's output (the contrastive
   encoder's full token grid, the autoencoder's latent) → StandardScaler → PCA per modality
   (:class:`~hcl_sklearn.ModalityPCA`), fitted on the training split. Reference rows, all on
   the same z-scored volumes the networks see: PCA on the voxels, the linear cross-modal
   model (PCA → CCA, :class:`~hcl_sklearn.CrossModalCCA`) and the oracle (the planted
   factors themselves);
4. **heritability** of every dimension (REML on one GRM) and the T1 x T2 **genetic
   correlation** of the contrastive dimensions;
5. **GWAS** of every dimension (:class:`~hcl_sklearn.CrossModalGWAS`): loci and T1∩T2 overlap;
6. **evaluation**: alignment, age prediction, disorder classification, and per planted
   factor the held-out ridge R² and the causal regions found, shared and modality-specific
   heritable factors apart;
7. the **report**: one self-contained HTML file.

A stage whose module is not installed is shown as "not available" in the report instead of
stopping the run; any other error stops the run.

Examples
--------
Run the demo at its smallest size from Python (the command line equivalent is
``hcl demo --quick``)::

    from hcl_sklearn.app.demo import run_demo
    result = run_demo("hcl_report", quick=True)
    print(result.report_path)
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["DemoConfig", "DemoResult", "StageUnavailable", "build_report", "run_demo"]

EMBEDDINGS = ("contrastive", "autoencoder", "voxel_pca", "pca_cca", "oracle")
LABELS = {"contrastive": "Contrastive (MoCo)", "autoencoder": "Autoencoder",
          "voxel_pca": "PCA on voxels", "pca_cca": "PCA → CCA (linear cross-modal)",
          "oracle": "Oracle (planted factors)"}
COLORS = {"contrastive": "#1f77b4", "autoencoder": "#ff7f0e", "voxel_pca": "#7f7f7f",
          "pca_cca": "#2ca02c", "oracle": "#000000"}
#: Planted heritable factors by what they touch: both modalities, or one.
SHARED, SPECIFIC = "shared", "modality-specific"

#: Report section ids, in order (the demo test checks every one is present).
SECTIONS = ("overview", "training", "alignment", "age", "disorder", "heritability",
            "genetic-correlation", "gwas", "loci-overlap", "truth", "comparison",
            "reproduce")


class StageUnavailable(RuntimeError):
    """A stage cannot run because a module it needs is not available (or an earlier stage)."""


@dataclasses.dataclass
class DemoConfig:
    """Sizes and settings of one demo run (defaults: the full demo, < 10 min on 2 CPU cores).

    ``DemoConfig.quick()`` returns the reduced configuration used by ``hcl demo --quick``
    and by the test suite.
    """

    n_subjects: int = 1000
    shape: tuple = (24, 28, 24)
    n_causal: int = 5
    h2: float = 0.6
    realism: str = "basic"
    encoder: str = "cnn"
    cnn_widths: tuple = (8, 16)
    embed_dim: int = 24
    pooling: object = "grid"
    proj_dim: int = 32
    projector_batchnorm: str = "per_modality"
    momentum: float = 0.9
    temperature: float = 0.1
    queue_modalities: str = "both"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    augment: str = "intensity"
    proj_hidden_dim: object = 256
    max_epochs: int = 80
    ae_latent_dim: int = 64
    ae_base_channels: int = 4
    ae_lr: float = 1e-3
    ae_max_epochs: int = 3
    batch_size: int = 16
    n_components: int = 16
    test_size: float = 0.2
    device: str = "cpu"
    random_state: int = 0

    @classmethod
    def quick(cls, **overrides):
        """The reduced run: ~100 subjects at 16x20x16, 2 epochs, 4 components per modality."""
        base = dict(n_subjects=120, shape=(16, 20, 16), max_epochs=2,
                    ae_max_epochs=2, batch_size=16, n_components=4)
        base.update(overrides)
        return cls(**base)


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` returns: the report's path, the config and every stage's output."""

    report_path: Path
    config: DemoConfig
    results: dict
    timings: dict

    def comparison(self):
        """The headline comparison table (contrastive vs autoencoder vs PCA on voxels)."""
        return self.results.get("comparison")


# --------------------------------------------------------------------------- helpers
def _need(module, attr=None):
    """Import ``hcl_sklearn.<module>`` (and fetch ``attr``).

    A missing *optional third-party* dependency (e.g. torch for the embedders) raises
    StageUnavailable naming it, so the report shows the stage as not available and says
    what to install; any other error -- an ImportError or AttributeError inside the
    package, i.e. a bug -- propagates and stops the run.
    """
    try:
        mod = importlib.import_module(f"hcl_sklearn.{module}")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != "hcl_sklearn":
            raise StageUnavailable(f"needs the optional dependency '{missing}', which is not "
                                   f"installed (pip install {missing})") from None
        raise
    return getattr(mod, attr) if attr else mod


def _get(results, key):
    value = results.get(key)
    if value is None or isinstance(value, StageUnavailable):
        raise StageUnavailable(f"needs the '{key}' stage, which did not run")
    return value


def _bunch_get(bunch, *names, default=None):
    for name in names:
        if isinstance(bunch, dict) and name in bunch:
            return bunch[name]
        if hasattr(bunch, name):
            return getattr(bunch, name)
    return default


# --------------------------------------------------------------------------- stages
def _stage_simulate(cfg, results):
    make_paired_cohort = _need("datasets", "make_paired_cohort")
    cohort = make_paired_cohort(n_subjects=cfg.n_subjects, shape=tuple(cfg.shape),
                                n_causal=cfg.n_causal, h2=cfg.h2, realism=cfg.realism,
                                random_state=cfg.random_state)
    ids = pd.Index(np.asarray(cohort.subject_ids).astype(str), name="subject_id")
    rng = np.random.default_rng(cfg.random_state)
    perm = rng.permutation(len(ids))
    n_test = max(int(round(cfg.test_size * len(ids))), 2)
    return {"cohort": cohort, "ids": ids, "train": np.sort(perm[n_test:]),
            "test": np.sort(perm[:n_test])}


def _history(model):
    """Per-epoch train/valid loss from a skorch-like embedder (empty frame if none)."""
    net = getattr(model, "history_", None) or getattr(getattr(model, "net_", None), "history",
                                                      None) or getattr(model, "history", None)
    rows = []
    if net is not None:
        for h in net:
            rows.append({"epoch": h.get("epoch"), "train_loss": h.get("train_loss"),
                         "valid_loss": h.get("valid_loss")})
    return pd.DataFrame(rows)


def _stage_train(cfg, results, kind, verbose):
    sim = _get(results, "simulate")
    X = sim["cohort"].X
    if kind == "contrastive":
        Est = _need("embed.contrastive", "MomentumContrastiveEmbedder")
        effective_queue_size = _need("embed.contrastive", "effective_queue_size")
        pooling = cfg.pooling if isinstance(cfg.pooling, str) else tuple(cfg.pooling)
        n_fit = len(sim["train"]) - math.ceil(0.1 * len(sim["train"]))  # 10 % validation
        # one key per other training subject: the longest queue the data fill
        queue_size = effective_queue_size(65536, n_fit, cfg.batch_size)
        model = Est(encoder=cfg.encoder, cnn_widths=tuple(cfg.cnn_widths),
                    embed_dim=cfg.embed_dim, pooling=pooling, proj_dim=cfg.proj_dim,
                    projector_batchnorm=cfg.projector_batchnorm, momentum=cfg.momentum,
                    temperature=cfg.temperature, queue_modalities=cfg.queue_modalities,
                    lr=cfg.lr, lr_schedule=cfg.lr_schedule, max_epochs=cfg.max_epochs,
                    augment=cfg.augment, proj_hidden_dim=cfg.proj_hidden_dim,
                    batch_size=cfg.batch_size, queue_size=queue_size,
                    device=cfg.device, random_state=cfg.random_state, verbose=verbose)
    else:
        Est = _need("embed.autoencoder", "AutoencoderEmbedder")
        model = Est(latent_dim=cfg.ae_latent_dim, base_channels=cfg.ae_base_channels,
                    lr=cfg.ae_lr, max_epochs=cfg.ae_max_epochs, batch_size=cfg.batch_size,
                    device=cfg.device, random_state=cfg.random_state, verbose=verbose)
    t0 = time.perf_counter()
    model.fit(_subset(X, sim["train"]))
    return {"model": model, "history": _history(model), "fit_seconds": time.perf_counter() - t0}


def _subset(X, idx):
    return X[idx] if isinstance(X, np.ndarray) else X.iloc[idx]


def _with_ids(frame, ids, model=None):
    if not isinstance(frame, pd.DataFrame) and model is not None:
        frame = pd.DataFrame(np.asarray(frame), columns=list(model.get_feature_names_out()))
    frame = pd.DataFrame(frame)
    if len(frame) != len(ids):
        raise ValueError(f"embedding has {len(frame)} rows for {len(ids)} subjects")
    frame.index = ids
    return frame


def _zscored_voxels(X, ids):
    """The reference preprocessing of the networks' input (each image z-scored on its
    non-zero voxels), flattened to a ``t1_v…``, ``t2_v…`` table."""
    from ..data.volumes import PairedVolumes

    Z = PairedVolumes(np.asarray(X, dtype=np.float32), target_shape=None).to_array()
    flat = Z.reshape(len(Z), 2, -1)
    cols = [f"t1_v{i:06d}" for i in range(flat.shape[2])] + \
           [f"t2_v{i:06d}" for i in range(flat.shape[2])]
    return pd.DataFrame(flat.reshape(len(Z), -1), index=ids, columns=cols)


def _oracle(sim):
    """The planted factors as an embedding: each modality's block holds the factors it sees
    (all but age, which every genetic analysis has as a covariate)."""
    truth = sim["cohort"].truth
    values = truth.factor_values.copy()
    values.index = sim["ids"]
    cols = {}
    for mod in ("t1", "t2"):
        for name, f in truth.factors.iterrows():
            if mod in f["modalities"] and f["kind"] != "age":
                cols[f"{mod}_{name}"] = values[name]
    return pd.DataFrame(cols, index=sim["ids"])


def _stage_embed(cfg, results):
    sim = _get(results, "simulate")
    ModalityPCA = _need("embed.reduction", "ModalityPCA")
    CrossModalCCA = _need("embed.reduction", "CrossModalCCA")
    X = sim["cohort"].X
    train = sim["train"]
    out = {}
    for kind in ("contrastive", "autoencoder"):
        trained = results.get(f"train_{kind}")
        if trained is None or isinstance(trained, StageUnavailable):
            continue
        model = trained["model"]
        raw = _with_ids(model.transform(X), sim["ids"], model)
        aligned = None
        if kind == "contrastive":  # the shared (projection) space, for retrieval
            model.set_params(output="projection")
            aligned = _with_ids(model.transform(X), sim["ids"], model)
            model.set_params(output="pooled")
        pca = ModalityPCA(n_components=cfg.n_components).fit(raw.iloc[train])
        out[kind] = {"raw": raw, "aligned": aligned if aligned is not None else raw,
                     "pcs": pca.transform(raw)}
    vox = _zscored_voxels(X, sim["ids"])
    pca = ModalityPCA(n_components=cfg.n_components).fit(vox.iloc[train])
    out["voxel_pca"] = {"raw": None, "aligned": None, "pcs": pca.transform(vox)}
    cca = CrossModalCCA(n_pca=64, n_components=cfg.n_components,
                        random_state=cfg.random_state).fit(vox.iloc[train])
    variates = cca.transform(vox)
    out["pca_cca"] = {"raw": None, "aligned": variates, "pcs": variates}
    out["oracle"] = {"raw": None, "aligned": None, "pcs": _oracle(sim)}
    return out


def _stage_heritability(cfg, results, verbose):
    sim = _get(results, "simulate")
    emb = _get(results, "embed")
    HeritabilityScorer = _need("genetics.heritability", "HeritabilityScorer")
    grm_fn = _need("genetics.grm", "grm")
    genotypes = _genotypes(sim)
    K = grm_fn(genotypes, samples=list(sim["ids"]))
    cov = _covariates(sim)
    out = {"grm": K}
    for kind, e in emb.items():
        scorer = HeritabilityScorer(grm=K, method="reml", covariates=cov).fit(e["pcs"])
        out[kind] = scorer.results_
    return out


def _genotypes(sim):
    Genotypes = _need("genetics", "Genotypes")
    cohort = sim["cohort"]
    G = _bunch_get(cohort, "genotypes")
    if isinstance(G, Genotypes):
        return G
    return Genotypes.from_array(np.asarray(G), list(sim["ids"]), _bunch_get(cohort, "snps"))


def _covariates(sim):
    cov = _bunch_get(sim["cohort"], "covariates")
    if cov is None:
        return None
    cov = pd.DataFrame(cov).copy()
    cov.index = cov.index.astype(str)
    return cov.loc[sim["ids"]]  # the estimators apply the package's covariate policy


def _stage_genetic_correlation(cfg, results):
    sim = _get(results, "simulate")
    emb = _get(results, "embed")
    her = _get(results, "heritability")
    genetic_correlation = _need("genetics.heritability", "genetic_correlation")
    kind = _kinds(emb)[0]  # the contrastive embedding when it ran
    pcs = emb[kind]["pcs"]
    from ..evaluation import split_modalities

    t1, t2 = split_modalities(pcs)
    rg = genetic_correlation(t1, t2, grm=her["grm"], covariates=_covariates(sim))
    return {"kind": kind, "rg": rg}


def _stage_gwas(cfg, results, verbose):
    sim = _get(results, "simulate")
    emb = _get(results, "embed")
    CrossModalGWAS = _need("genetics.gwas", "CrossModalGWAS")
    genotypes = _genotypes(sim)
    cov = _covariates(sim)
    out = {}
    for kind, e in emb.items():
        out[kind] = CrossModalGWAS(genotypes, covariates=cov).fit(e["pcs"])
    return out


def _stage_evaluation(cfg, results):
    from .. import evaluation

    sim = _get(results, "simulate")
    emb = _get(results, "embed")
    cohort = sim["cohort"]
    age = pd.Series(np.asarray(_bunch_get(cohort, "age")), index=sim["ids"], name="age")
    disorder = _bunch_get(cohort, "disorder")
    out = {"alignment": {}, "age": {}, "disorder": {}}
    for kind, e in emb.items():
        pcs = e["pcs"].dropna(axis=0)
        if e["aligned"] is not None:
            out["alignment"][kind] = evaluation.alignment_scores(
                e["aligned"].iloc[sim["test"]], reg=0.1, random_state=cfg.random_state)
        out["age"][kind] = evaluation.age_prediction(pcs, age.loc[pcs.index],
                                                     random_state=cfg.random_state)
        if disorder is not None:
            y = pd.Series(np.asarray(disorder), index=sim["ids"]).loc[pcs.index]
            out["disorder"][kind] = evaluation.disorder_classification(
                pcs, y, random_state=cfg.random_state)
    return out


def _overlaps(a, b):
    """For each interval of ``a``: does it overlap any interval of ``b``?"""
    hit = np.zeros(len(a), dtype=bool)
    for i, (c, st, en) in enumerate(zip(a["chromosome"].astype(str), a["start"], a["end"])):
        bb = b[b["chromosome"].astype(str) == c]
        hit[i] = bool(((bb["start"] <= en) & (bb["end"] >= st)).any())
    return hit


def _factor_group(f):
    if f["kind"] != "heritable":
        return str(f["kind"])
    return SHARED if len(f["modalities"]) > 1 else SPECIFIC


def _causal_regions(sim, flank=125_000):
    """Each heritable factor's causal SNPs, padded by ``flank`` and merged, per factor."""
    merge_intervals = _need("genetics.gwas.loci", "merge_intervals")
    truth = sim["cohort"].truth
    causal = truth.causal.merge(_bunch_get(sim["cohort"], "snps")[["variant_id", "chrom", "pos"]],
                                on="variant_id", how="left")
    out = {}
    for name, grp in causal.groupby("factor", sort=False):
        pos = grp["pos"].to_numpy(dtype=np.int64)
        out[name] = merge_intervals(pd.DataFrame({
            "chromosome": grp["chrom"].astype(str), "start": pos - flank,
            "end": pos + flank}))[["chromosome", "start", "end"]].reset_index(drop=True)
    return out


def _all_loci(gwas):
    loci = gwas.loci_
    if not loci:
        return pd.DataFrame(columns=["chromosome", "start", "end"])
    return pd.concat([lo[["chromosome", "start", "end"]] for lo in loci.values()],
                     ignore_index=True)


def _stage_truth(cfg, results):
    """Recovery of the planted truth per factor: held-out ridge R² and causal regions found."""
    from ..evaluation import factor_recovery

    sim = _get(results, "simulate")
    emb = _get(results, "embed")
    truth = _bunch_get(sim["cohort"], "truth")
    if truth is None:
        raise StageUnavailable("the simulator returned no planted truth")
    factors = truth.factors
    values = truth.factor_values.copy()
    values.index = sim["ids"]
    table = pd.DataFrame({"group": [_factor_group(f) for _, f in factors.iterrows()],
                          "modalities": ["+".join(m) for m in factors["modalities"]],
                          "realised_h2": factors["realised_h2"]}, index=factors.index)
    table.index.name = "factor"
    for kind in _kinds(emb):
        rec = factor_recovery(emb[kind]["pcs"], values, sim["ids"][sim["train"]],
                              sim["ids"][sim["test"]])
        table[LABELS[kind]] = rec["r2"]
    out = {"r2": table}
    gw = results.get("gwas")
    regions = _causal_regions(sim)
    out["summary"] = {"causal SNPs": int(len(truth.causal)),
                      "causal regions (±125 kb, merged per factor)":
                          int(sum(len(r) for r in regions.values()))}
    if isinstance(gw, dict):
        found = pd.DataFrame({"group": table.loc[list(regions), "group"],
                              "causal regions": [len(r) for r in regions.values()]})
        found.index.name = "factor"
        for kind in _kinds(gw):
            loci = _all_loci(gw[kind])
            found[LABELS[kind]] = [int(_overlaps(r, loci).sum()) if len(loci) else 0
                                   for r in regions.values()]
        out["regions"] = found
        spurious = {}
        every = pd.concat(list(regions.values()), ignore_index=True)
        for kind in _kinds(gw):
            loci = _all_loci(gw[kind])
            spurious[LABELS[kind]] = {
                "loci (T1 ∪ T2, unmerged)": len(loci),
                "loci on no causal region": int((~_overlaps(loci, every)).sum())
                if len(loci) else 0}
        spurious = pd.DataFrame.from_dict(spurious, orient="index")
        spurious.index.name = "embedding"
        out["spurious"] = spurious
    return out


#: Titles of the truth stage's tables in the report.
TRUTH_TITLES = {
    "r2": "Held-out ridge R² of each planted factor from each embedding's PCs (fitted on "
          "the training split, scored on the held-out subjects)",
    "regions": "Causal regions (±125 kb) of each heritable factor overlapped by a "
               "genome-wide locus of the embedding",
    "spurious": "Loci outside every causal region",
}


def _stage_comparison(cfg, results):
    ev = _get(results, "evaluation")
    her = results.get("heritability")
    gw = results.get("gwas")
    tr = results.get("truth")
    rows = {}
    for kind in EMBEDDINGS:
        if kind not in ev["age"]:
            continue
        age = ev["age"][kind]
        row = {"age_mae": age["mae"].min(), "age_r": age["pearson_r"].max()}
        dis = ev["disorder"].get(kind)
        row["disorder_auc"] = dis.loc["mean", "roc_auc"] if dis is not None else np.nan
        al = ev["alignment"].get(kind)
        row["top1"] = float(al["top1"].iloc[0]) if al is not None else np.nan
        row["mean_h2"] = (_h2_table(her[kind])["h2"].mean()
                          if isinstance(her, dict) and kind in her else np.nan)
        if isinstance(gw, dict) and kind in gw:
            row.update(_loci_counts(gw[kind]))
        if isinstance(tr, dict):
            r2 = tr["r2"]
            for group, col in ((SHARED, "shared_r2"), (SPECIFIC, "specific_r2")):
                sel = r2["group"] == group
                row[col] = r2.loc[sel, LABELS[kind]].mean() if sel.any() else np.nan
                row[col.replace("_r2", "_r2_min")] = (r2.loc[sel, LABELS[kind]].min()
                                                     if sel.any() else np.nan)
            reg = tr.get("regions")
            if reg is not None and LABELS[kind] in reg.columns:
                for group, col in ((SHARED, "shared_regions"), (SPECIFIC, "specific_regions")):
                    row[col] = int(reg.loc[reg["group"] == group, LABELS[kind]].sum())
        rows[LABELS[kind]] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "embedding"
    return out


def _h2_table(res):
    return res if isinstance(res, pd.DataFrame) else pd.DataFrame(res)


def _loci_counts(gwas):
    loci = getattr(gwas, "loci_", None)
    overlap = getattr(gwas, "overlap_", None)
    out = {}
    if isinstance(loci, dict):
        for mod, table in loci.items():
            out[f"loci_{mod}"] = len(table)
    elif isinstance(loci, pd.DataFrame):
        out["loci"] = len(loci)
    if overlap is not None:
        n = getattr(overlap, "n_shared", None)
        if n is None and isinstance(overlap, dict):
            n = overlap.get("n_shared")
        out["loci_t1_and_t2"] = n
    return out


# --------------------------------------------------------------------------- runner
_STAGES = (
    ("simulate", "Simulating the cohort"),
    ("train_contrastive", "Training the contrastive embedder"),
    ("train_autoencoder", "Training the autoencoder baseline"),
    ("embed", "Embedding and per-modality PCA"),
    ("heritability", "Heritability (REML)"),
    ("genetic_correlation", "T1 x T2 genetic correlation"),
    ("gwas", "Cross-modal GWAS"),
    ("evaluation", "Alignment, age and disorder evaluation"),
    ("truth", "Recovery of the planted truth"),
    ("comparison", "Comparison table"),
)


def run_demo(output_dir="hcl_report", *, quick=False, config=None, verbose=1, **overrides):
    """Run the whole demo and write ``<output_dir>/report.html``.

    Parameters
    ----------
    output_dir : str or Path, default="hcl_report"
    quick : bool, default=False
        Use :meth:`DemoConfig.quick` (a reduced run, about a minute) instead of the defaults.
    config : DemoConfig, optional
        Full control over sizes; ``overrides`` are applied on top.
    verbose : int, default=1
        0: silent; 1: a progress bar over stages and the training progress.
    **overrides
        Any :class:`DemoConfig` field, e.g. ``n_subjects=300``.

    Returns
    -------
    DemoResult
    """
    from tqdm.auto import tqdm

    if config is None:
        config = DemoConfig.quick(**overrides) if quick else DemoConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    _check_config(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results, timings = {}, {}
    runners = {
        "simulate": lambda: _stage_simulate(config, results),
        "train_contrastive": lambda: _stage_train(config, results, "contrastive", verbose),
        "train_autoencoder": lambda: _stage_train(config, results, "autoencoder", verbose),
        "embed": lambda: _stage_embed(config, results),
        "heritability": lambda: _stage_heritability(config, results, verbose),
        "genetic_correlation": lambda: _stage_genetic_correlation(config, results),
        "gwas": lambda: _stage_gwas(config, results, verbose),
        "evaluation": lambda: _stage_evaluation(config, results),
        "truth": lambda: _stage_truth(config, results),
        "comparison": lambda: _stage_comparison(config, results),
    }
    bar = tqdm(_STAGES, desc="hcl demo", unit="stage", disable=verbose <= 0)
    for key, label in bar:
        bar.set_postfix_str(label)
        logger.info("%s ...", label)
        t0 = time.perf_counter()
        try:
            results[key] = runners[key]()
        except StageUnavailable as exc:
            logger.warning("%s: skipped (%s)", label, exc)
            results[key] = exc
        timings[key] = time.perf_counter() - t0
    bar.close()
    report = build_report(results, config, timings)
    path = report.save(output_dir / "report.html")
    _save_tables(results, output_dir)
    logger.info("report written to %s", path)
    return DemoResult(report_path=path, config=config, results=results, timings=timings)


def _check_config(cfg):
    if cfg.n_subjects < 40:
        raise ValueError(f"n_subjects={cfg.n_subjects} is too small for the evaluation "
                         "(nested CV, train/test split); use at least 40.")
    if len(cfg.shape) != 3 or min(cfg.shape) < 8:
        raise ValueError(f"shape must be 3 integers >= 8, got {cfg.shape}.")
    if cfg.max_epochs < 1 or cfg.ae_max_epochs < 1:
        raise ValueError("max_epochs and ae_max_epochs must be >= 1.")


def _save_tables(results, output_dir):
    comp = results.get("comparison")
    if isinstance(comp, pd.DataFrame):
        comp.to_csv(output_dir / "comparison.tsv", sep="\t")


# --------------------------------------------------------------------------- report
def build_report(results, config, timings=None):
    """Assemble the HTML report from the stages' results (see :data:`SECTIONS`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from .report import HTMLReport

    report = HTMLReport("hcl-sklearn demo: heritable contrastive brain representations",
                        subtitle="Simulated paired T1/T2 cohort on the real MNI152 template "
                                 "with real 1000 Genomes chr22 genotypes.")
    timings = timings or {}
    builders = {
        "overview": ("Cohort and run", _section_overview),
        "training": ("Training curves", _section_training),
        "alignment": ("T1-T2 alignment and retrieval", _section_alignment),
        "age": ("Age prediction", _section_age),
        "disorder": ("Disorder classification", _section_disorder),
        "heritability": ("Heritability per dimension", _section_heritability),
        "genetic-correlation": ("T1 x T2 genetic correlation", _section_rg),
        "gwas": ("Cross-modal GWAS", _section_gwas),
        "loci-overlap": ("Loci and T1∩T2 overlap vs the baselines", _section_loci),
        "truth": ("Recovery of the planted truth", _section_truth),
        "comparison": ("Comparison: contrastive vs autoencoder vs the reference rows",
                       _section_comparison),
        "reproduce": ("Reproduce this report", _section_reproduce),
    }
    for sid in SECTIONS:
        title, fn = builders[sid]
        sec = report.add_section(title, section_id=sid)
        try:
            fn(sec, results, config, timings)
        except StageUnavailable as exc:
            sec.add_unavailable(str(exc))
    return report


# --------------------------------------------------------------------------- sections
def _plt():
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(ax, table, cols):
    """One group of bars per column of ``cols``, one bar per embedding (row of ``table``,
    indexed by its label), in the embedding's colour."""
    width = 0.8 / len(table)
    for i, (name, row) in enumerate(table.iterrows()):
        kind = next(k for k in EMBEDDINGS if LABELS[k] == name)
        ax.bar(np.arange(len(cols)) + i * width, row[cols].astype(float), width, label=name,
               color=COLORS[kind])
    ax.set_xticks(np.arange(len(cols)) + width * (len(table) - 1) / 2, cols)


def _kinds(d):
    return [k for k in EMBEDDINGS if k in d]


def _section_overview(sec, results, cfg, timings):
    sec.add_text(
        "Every number below comes from one run of `hcl demo` on simulated data with a known "
        "truth: brain factors of planted SNP heritability change tissue shape and contrast in "
        "paired T1 and T2 volumes rendered from the real MNI152 template, with genotypes "
        "resampled from real 1000 Genomes chr22 haplotype segments. The contrastive embedder "
        "and the autoencoder baseline are trained on the same training split; all models are "
        "scored on the same subjects.")
    sim = results.get("simulate")
    metrics = {"subjects": cfg.n_subjects, "grid": "x".join(map(str, cfg.shape)),
               "PCs per modality": cfg.n_components, "encoder": cfg.encoder,
               "contrastive epochs": cfg.max_epochs, "autoencoder epochs": cfg.ae_max_epochs}
    if isinstance(sim, dict):
        G = _bunch_get(sim["cohort"], "genotypes")
        if G is not None:
            metrics["SNPs"] = int(G.shape[1]) if hasattr(G, "shape") else None
        metrics["train / test"] = f"{len(sim['train'])} / {len(sim['test'])}"
    sec.add_metrics(metrics)
    if timings:
        t = pd.DataFrame({"seconds": pd.Series(timings)})
        t["status"] = ["skipped: " + str(results[k]) if isinstance(results.get(k),
                                                                     StageUnavailable)
                       else "done" for k in t.index]
        t.loc["total"] = [t["seconds"].sum(), ""]
        t.index.name = "stage"
        sec.add_table(t, "Wall-clock time per stage")
    if isinstance(sim, StageUnavailable):
        raise sim


def _section_training(sec, results, cfg, timings):
    plt = _plt()
    curves = {k: results.get(f"train_{k}") for k in ("contrastive", "autoencoder")}
    avail = {k: v for k, v in curves.items() if isinstance(v, dict)}
    if not avail:
        raise StageUnavailable(str(curves["contrastive"]))
    fig, axes = plt.subplots(1, len(avail), figsize=(5 * len(avail), 3.2), squeeze=False)
    for ax, (kind, tr) in zip(axes[0], avail.items()):
        h = tr["history"]
        if len(h):
            ax.plot(h["epoch"], h["train_loss"], "o-", label="train", color=COLORS[kind])
            if h["valid_loss"].notna().any():
                ax.plot(h["epoch"], h["valid_loss"], "s--", label="validation", color="k")
        ax.set_title(f"{LABELS[kind]} ({tr['fit_seconds']:.0f} s)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("InfoNCE loss" if kind == "contrastive" else "masked MSE")
        ax.legend()
    fig.tight_layout()
    sec.add_figure(fig, "Loss per epoch (contrastive: symmetric InfoNCE; autoencoder: "
                        "reconstruction MSE inside the brain mask)")
    for kind, v in curves.items():
        if isinstance(v, StageUnavailable):
            sec.add_note(f"{LABELS[kind]}: {v}")


def _section_alignment(sec, results, cfg, timings):
    ev = _get(results, "evaluation")
    al = ev["alignment"]
    if not al:
        raise StageUnavailable("no trained embedder to align")
    table = pd.concat({LABELS[k]: al[k].iloc[0] for k in _kinds(al)}, axis=1).T
    table.index.name = "embedding"
    sec.add_text("Held-out subjects only. Contrastive: the L2-normalised projection (the space "
                 "the InfoNCE loss aligns); autoencoder: the two latents. Retrieval: for "
                 "each subject's T1 embedding, the rank of its own T2 among all subjects "
                 "(cosine similarity), both directions averaged. Chance top-1 is 1/n. "
                 "CKA of the true pairs is compared with randomly re-paired subjects.")
    keep = [c for c in ["mean_cca_r", "linear_cka", "linear_cka_shuffled", "rbf_cka",
                        "rbf_cka_shuffled", "top1", "recall@5", "recall@10", "median_rank",
                        "chance_top1", "n"] if c in table.columns]
    sec.add_table(table[keep], "Alignment of the T1 and T2 embeddings")
    plt = _plt()
    cols = [c for c in ("top1", "recall@5", "recall@10") if c in table.columns]
    fig, ax = plt.subplots(figsize=(5.5, 3))
    _grouped_bars(ax, table, cols)
    if "chance_top1" in table.columns:
        ax.axhline(float(table["chance_top1"].iloc[0]), color="k", ls=":", label="chance top-1")
    ax.set_ylabel("fraction of subjects")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_figure(fig, "Cross-modal retrieval")


def _section_age(sec, results, cfg, timings):
    ev = _get(results, "evaluation")
    age = ev["age"]
    table = pd.concat({LABELS[k]: age[k] for k in _kinds(age)}, names=["embedding", "model"])
    sec.add_text(f"{2 * cfg.n_components} features (T1 and T2 PCs) → StandardScaler → "
                 "regressor; held-out MAE, RMSE and Pearson r on a random 20% split, and the "
                 "mean Pearson r over 5 cross-validation folds.")
    sec.add_table(table.reset_index(), index=False, caption="Age prediction")
    best = {LABELS[k]: age[k]["mae"].min() for k in _kinds(age)}
    sec.add_metrics({f"best MAE, {k} (years)": v for k, v in best.items()})


def _section_disorder(sec, results, cfg, timings):
    ev = _get(results, "evaluation")
    dis = ev["disorder"]
    if not dis:
        raise StageUnavailable("the simulator returned no disorder label")
    table = pd.concat({LABELS[k]: dis[k] for k in _kinds(dis)}, names=["embedding", "fold"])
    sec.add_text("Class-balanced logistic regression in nested cross-validation: outer "
                 "stratified 3-fold; inner 2-fold over C ∈ {0.01, 0.1, 1, 10} and penalty "
                 "l1 / l2 / none, scored by ROC-AUC.")
    sec.add_metrics({f"ROC-AUC, {LABELS[k]}": dis[k].loc["mean", "roc_auc"] for k in _kinds(dis)})
    sec.add_table(table.reset_index(), index=False, caption="Disorder classification per "
                                                            "outer fold")


def _section_heritability(sec, results, cfg, timings):
    her = _get(results, "heritability")
    kinds = _kinds(her)
    n_dims = len(_h2_table(her[kinds[0]]))
    plotted = [k for k in kinds if len(_h2_table(her[k])) == n_dims]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.4))
    width = 0.8 / len(plotted)
    summary = {}
    names = list(_h2_table(her[kinds[0]]).index)
    for i, kind in enumerate(kinds):
        t = _h2_table(her[kind])
        if kind in plotted:
            x = np.arange(len(t)) + i * width
            ax.bar(x, t["h2"], width, yerr=t.get("h2_se"), label=LABELS[kind],
                   color=COLORS[kind], error_kw={"lw": 0.6})
        summary[LABELS[kind]] = {
            "mean_h2": t["h2"].mean(), "max_h2": t["h2"].max(),
            "n_nominal_p<0.05": int((t["pvalue"] < 0.05).sum()) if "pvalue" in t else None,
            "n_dims": len(t)}
    ax.set_xticks(np.arange(len(names)) + width * (len(plotted) - 1) / 2,
                  [str(n).replace("_pc", ":") for n in names], rotation=90, fontsize=7)
    ax.set_ylabel("SNP heritability (REML)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_text("SNP heritability of every PC by REML on one genomic relationship matrix "
                 "(chr22 SNPs), with covariates; error bars are standard errors.")
    sec.add_figure(fig, "h² per dimension (T1 PCs, then T2 PCs)")
    table = pd.DataFrame.from_dict(summary, orient="index")
    table.index.name = "embedding"
    sec.add_table(table, "Heritability summary")


def _rg_matrix(rg):
    if isinstance(rg, pd.DataFrame) and "rg" in rg.columns:
        a, b = [c for c in rg.columns if c not in ("rg",)][:2]
        return rg.pivot(index=a, columns=b, values="rg")
    for attr in ("rg_", "rg"):
        if hasattr(rg, attr):
            return _rg_matrix(getattr(rg, attr))
    return pd.DataFrame(rg)


def _section_rg(sec, results, cfg, timings):
    res = _get(results, "genetic_correlation")
    M = _rg_matrix(res["rg"]).astype(float)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    im = ax.imshow(M.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_yticks(range(M.shape[0]), [str(i) for i in M.index], fontsize=7)
    ax.set_xticks(range(M.shape[1]), [str(c) for c in M.columns], fontsize=7, rotation=90)
    ax.set_ylabel("T1 dimension")
    ax.set_xlabel("T2 dimension")
    fig.colorbar(im, ax=ax, label="genetic correlation")
    fig.tight_layout()
    sec.add_text("Genetic correlation between every T1 and every T2 PC "
                 "(bivariate Haseman–Elston regression on the same GRM, covariates regressed out; not bounded to [-1, 1]). Shared genetic architecture between the "
                 "modalities shows up as large |rg| off the zero line.")
    sec.add_figure(fig, f"T1 x T2 genetic correlation of the {LABELS[res['kind']]} dimensions")
    vals = np.abs(M.to_numpy()[np.isfinite(M.to_numpy())])
    metrics = {"pairs with rg defined": f"{vals.size} of {M.size}"}
    if vals.size:
        metrics.update({"mean |rg|": vals.mean(), "max |rg|": vals.max()})
    sec.add_metrics(metrics)
    if vals.size < M.size:
        sec.add_note("rg is undefined (blank cell) where either dimension's h² estimate is not "
                     "positive; small cohorts leave many pairs undefined.")


def _section_gwas(sec, results, cfg, timings):
    gw = _get(results, "gwas")
    kind = "contrastive" if "contrastive" in gw else _kinds(gw)[0]
    g = gw[kind]
    sec.add_text("One GWAS per dimension (exact OLS with age, sex and 10 ancestry PCs as "
                 "covariates, MAF ≥ 0.01); per SNP the minimum p over a modality's "
                 "dimensions; genome-wide threshold 5e-8 divided by the number of dimensions; "
                 "loci by LD clumping (r² 0.1, 250 kb), padded ±125 kb and merged.")
    sec.add_figure(g.plot_miami(), f"Miami plot ({LABELS[kind]}): T1 minP up, T2 minP down")
    if "autoencoder" in gw and kind != "autoencoder":
        sec.add_figure(gw["autoencoder"].plot_miami(), "Miami plot (Autoencoder baseline)")
    sec.add_figure(g.plot_qq(), f"QQ plot of all {LABELS[kind]} dimensions")
    lam = pd.Series({LABELS[k]: float(np.nanmedian(gw[k].lambda_gc_)) for k in _kinds(gw)})
    sec.add_metrics({f"median λGC, {k}": v for k, v in lam.items()})


def _section_loci(sec, results, cfg, timings):
    comp = _get(results, "comparison")
    cols = [c for c in comp.columns if c.startswith("loci")]
    if not cols:
        raise StageUnavailable("the GWAS stage did not run")
    sec.add_text("Number of merged loci per modality and the loci shared by T1 and T2 (merged "
                 "intervals that overlap), for the contrastive embedding and the baselines.")
    sec.add_table(comp[cols], "Loci found")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    _grouped_bars(ax, comp, cols)
    ax.set_ylabel("loci")
    ax.legend(fontsize=8)
    fig.tight_layout()
    sec.add_figure(fig, "Loci per modality and T1∩T2 overlap")


def _section_truth(sec, results, cfg, timings):
    tr = _get(results, "truth")
    sec.add_text(
        "The simulator plants factors with a known effect on the images: heritable shape "
        "factors seen in both T1 and T2 (shared), heritable factors seen in one modality "
        "only (modality-specific), age, disorder and non-genetic shape variation. For each "
        "factor a ridge regression on all PCs of an embedding (both modalities; penalty by "
        "leave-one-out on the training split) predicts it on the held-out subjects; R² does "
        "not depend on how the embedding is rotated. A cross-modal objective is built to "
        "keep what T1 and T2 share, so the claim concerns the shared rows; modality-specific "
        "factors are reported apart.")
    sec.add_metrics(tr["summary"])
    r2 = tr["r2"]
    sec.add_table(r2, TRUTH_TITLES["r2"])
    plt = _plt()
    kinds = [k for k in EMBEDDINGS if LABELS[k] in r2.columns and k != "oracle"]
    her = r2[r2["group"].isin([SHARED, SPECIFIC])]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(kinds), 1)
    for i, kind in enumerate(kinds):
        ax.bar(np.arange(len(her)) + i * width, her[LABELS[kind]].clip(lower=0), width,
               label=LABELS[kind], color=COLORS[kind])
    ax.set_xticks(np.arange(len(her)) + width * (len(kinds) - 1) / 2,
                  [f"{n}\n({g})" for n, g in zip(her.index, her["group"])], fontsize=7)
    ax.set_ylabel("held-out R²")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    sec.add_figure(fig, "Held-out R² of the planted heritable factors (negative R² shown as 0)")
    for key in ("regions", "spurious"):
        if key in tr:
            sec.add_table(tr[key], TRUTH_TITLES[key])


def _section_comparison(sec, results, cfg, timings):
    comp = _get(results, "comparison")
    sec.add_text(
        "The headline comparison on this run. Lower MAE is better; higher is better for the "
        "rest. top1: held-out cross-modal retrieval (contrastive: projection; PCA → CCA: "
        "canonical variates; blank where the two modalities do not share a space). "
        "shared_r2 / specific_r2: mean held-out R² of the shared and of the "
        "modality-specific heritable factors (the _min columns: the worst factor); "
        "shared_regions / specific_regions: their causal regions overlapped by a locus. "
        "Reference rows: PCA on the z-scored voxels, the linear cross-modal model "
        "(PCA(64) → CCA on z-scored voxels) and the oracle (the planted factors "
        "themselves). Written to comparison.tsv beside the report.")
    sec.add_table(comp, "Contrastive vs autoencoder vs the reference rows")


def _section_reproduce(sec, results, cfg, timings):
    default = DemoConfig()
    args = []
    for field in dataclasses.fields(DemoConfig):
        v = getattr(cfg, field.name)
        if v != getattr(default, field.name):
            flag = "--" + field.name.replace("_", "-")
            args.append(f"{flag} {' '.join(map(str, v)) if isinstance(v, tuple) else v}")
    sec.add_text("hcl demo " + " ".join(args) if args else "hcl demo")
    cfg_table = pd.DataFrame({"value": {f.name: str(getattr(cfg, f.name))
                                        for f in dataclasses.fields(DemoConfig)}})
    cfg_table.index.name = "setting"
    sec.add_table(cfg_table, "Configuration")
