"""The demo's stages: simulate, train, embed, heritability, rg, GWAS, evaluation, truth.

Each stage is a function of the configuration and the previous stages' results. A stage
that needs a missing optional third-party dependency raises :class:`StageUnavailable`
(the report shows it as not available); any other error stops the run.
"""

from __future__ import annotations

import importlib
import logging
import time

import numpy as np
import pandas as pd

from .config import (EMBEDDINGS, LABELS, SHARED, SPECIFIC, StageUnavailable, _bunch_get,
                     _get, _h2_table, _kinds)

logger = logging.getLogger(__name__)


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


def planted_genes(drug_class, class_system="PA", chrom="22"):
    """The genes of ``chrom`` (GENCODE 32) targeted by drugs of a DrugCentral class."""
    load_drugcentral = _need("targets.drugs", "load_drugcentral")
    load_genes = _need("targets.genes", "load_genes")
    table = load_drugcentral(class_system)
    in_class = set(table.loc[table["drug_class"] == drug_class, "gene"])
    if not in_class:
        raise ValueError(f"DrugCentral has no {class_system} class {drug_class!r}.")
    genes = load_genes()
    on_chrom = genes.loc[genes["chrom"].astype(str) == chrom, "symbol"]
    out = sorted(set(on_chrom) & in_class)
    if not out:
        raise ValueError(f"class {drug_class!r} has no target gene on chromosome {chrom}.")
    return out


def _stage_simulate(cfg, results):
    make_paired_cohort = _need("datasets", "make_paired_cohort")
    genes = (planted_genes(cfg.planted_drug_class, cfg.drug_class_system)
             if cfg.planted_drug_class else None)
    cohort = make_paired_cohort(n_subjects=cfg.n_subjects, shape=tuple(cfg.shape),
                                n_causal=cfg.n_causal, h2=cfg.h2, realism=cfg.realism,
                                causal_genes=genes, random_state=cfg.random_state)
    ids = pd.Index(np.asarray(cohort.subject_ids).astype(str), name="subject_id")
    train, test = demo_split(len(ids), cfg.test_size, cfg.random_state)
    return {"cohort": cohort, "ids": ids, "train": train, "test": test}


def demo_split(n_subjects, test_size, random_state):
    """The demo's train / held-out split: sorted positions, a random ``test_size`` share
    (at least 2 subjects) held out by ``numpy.random.default_rng(random_state)``."""
    perm = np.random.default_rng(random_state).permutation(n_subjects)
    n_test = max(int(round(test_size * n_subjects)), 2)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


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
        pooling = cfg.pooling if isinstance(cfg.pooling, str) else tuple(cfg.pooling)
        model = Est(encoder=cfg.encoder, cnn_widths=tuple(cfg.cnn_widths),
                    embed_dim=cfg.embed_dim, pooling=pooling, proj_dim=cfg.proj_dim,
                    projector_batchnorm=cfg.projector_batchnorm, momentum=cfg.momentum,
                    temperature=cfg.temperature, queue_modalities=cfg.queue_modalities,
                    lr=cfg.lr, lr_schedule=cfg.lr_schedule,
                    warmup_epochs=cfg.warmup_epochs, max_epochs=cfg.max_epochs,
                    augment=cfg.augment, proj_hidden_dim=cfg.proj_hidden_dim,
                    batch_size=cfg.batch_size, queue_size=None,
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
    from ...data.volumes import PairedVolumes

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
    from ...evaluation import split_modalities

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


def _targets_one(gwas, genotypes, class_system):
    from hcl_sklearn.targets.drugs import DrugTargetEnrichment
    from hcl_sklearn.targets.gene_test import GeneBasedTest
    from hcl_sklearn.targets.shared import CrossModalTargets

    gt = GeneBasedTest(ld_reference=genotypes, per_phenotype=False).fit(gwas.sumstats_)
    return CrossModalTargets(enrichment=DrugTargetEnrichment(
        class_system=class_system)).fit(gt)


def _stage_targets(cfg, results):
    """Gene-based test of each embedding's GWAS, drug-target enrichment, T1/T2/shared."""
    from joblib import Parallel, delayed

    sim = _get(results, "simulate")
    gw = _get(results, "gwas")
    _need("targets.shared", "CrossModalTargets")
    genotypes = _genotypes(sim)
    planted = list(getattr(sim["cohort"].truth, "causal_genes", []) or [])
    # one process per embedding (the gene test's p-value inversions are Python-bound)
    fits = Parallel(n_jobs=min(len(gw), 2))(
        delayed(_targets_one)(g, genotypes, cfg.drug_class_system) for g in gw.values())
    out, rows = dict(zip(gw, fits)), {}
    for kind, cm in out.items():
        shared = set(cm.genes_.loc[cm.genes_["shared"], "gene"])
        row = {**{f"genes_{m}": int(cm.summary_.loc["genes", m]) for m in cm.modalities_},
               "genes_shared": int(cm.summary_.loc["genes", "shared"]),
               "planted_genes_shared": f"{len(shared & set(planted))}/{len(planted)}"}
        if cfg.planted_drug_class:
            d = cm.drugs_.dropna(subset=["p_shared"]).sort_values(
                "p_shared", kind="stable").reset_index(drop=True)
            hit = d.index[d["drug_class"] == cfg.planted_drug_class]
            row["planted_class_rank"] = int(hit[0]) + 1 if len(hit) else np.nan
            row["planted_class_p"] = float(d.loc[hit[0], "p_shared"]) if len(hit) else np.nan
            row["planted_class_q"] = float(d.loc[hit[0], "q_shared"]) if len(hit) else np.nan
            row["drug_classes_shared_genes"] = int(d["significant_shared"].sum())
        rows[LABELS[kind]] = row
    return {"fits": out, "table": pd.DataFrame(rows).T, "planted": planted}


def _stage_relatives(cfg, results):
    """OLS vs LOCO mixed model on a related cohort's planted factors (genetic only)."""
    calib = _need("evaluation.gwas_calibration", "relatedness_calibration")
    table, fits = calib(cfg.related_subjects, n_heritable=cfg.related_factors,
                        n_chromosomes=cfg.related_chromosomes,
                        random_state=cfg.random_state, return_fits=True)
    return {"table": table, "ols": fits["ols"], "lmm": fits["lmm"],
            "n_pairs": int(len(fits["cohort"].truth.expected_relatedness))}


def _stage_evaluation(cfg, results):
    from ... import evaluation

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
    from ...evaluation import factor_recovery

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


_STAGES = (
    ("simulate", "Simulating the cohort"),
    ("train_contrastive", "Training the contrastive embedder"),
    ("train_autoencoder", "Training the autoencoder baseline"),
    ("embed", "Embedding and per-modality PCA"),
    ("heritability", "Heritability (REML)"),
    ("genetic_correlation", "T1 x T2 genetic correlation"),
    ("gwas", "Cross-modal GWAS"),
    ("targets", "Genes and drug classes (gene-based test, drug-target enrichment)"),
    ("relatives", "GWAS on related subjects: OLS vs mixed model"),
    ("evaluation", "Alignment, age and disorder evaluation"),
    ("truth", "Recovery of the planted truth"),
    ("comparison", "Comparison table"),
)
