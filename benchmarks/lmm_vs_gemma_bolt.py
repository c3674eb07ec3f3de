"""CrossModalGWAS(model='lmm') vs GEMMA and BOLT-LMM run once per phenotype, as users must.

One simulated cohort of related subjects (sibships of 4 by default: every subject has
3 siblings; allele frequencies uniform in [0.05, 0.5], SNPs on ``--chroms``
chromosomes), P polygenic phenotypes (h2 0.5), written as PLINK 1 files; then, on the
same files and the same threads, side by side in this run:

* **GEMMA** (exact LMM, per-SNP REML variance ratio): ``-gk 1`` (kinship) and
  ``-eigen`` once, then ``-lmm 1`` once per phenotype re-using the eigendecomposition
  (``-d/-u``: GEMMA at its strongest); compared with the package without LOCO
  (GEMMA uses one kinship for every chromosome);
* **BOLT-LMM** ``--lmmInfOnly`` (the infinitesimal model, LOCO; Debian's build needs
  ``--LDscoresUseChip``) once per phenotype; compared with the package with LOCO;
* **the package**: ``CrossModalGWAS(model='lmm').fit`` for all P phenotypes at once
  (GRM, REML per phenotype, the scan, loci) + writing the GWAS-SSF files
  (``to_tsv_gz(per_phenotype=True)``), each run in a fresh Python process (start-up,
  reading included) — what the user waits for.

``--gemma-runs k`` / ``--bolt-runs k`` (default: all P) time only k of the per-phenotype
runs and multiply by P / k (printed as such): every run of a tool costs the same (same
N, M; GEMMA re-uses the eigendecomposition, BOLT re-estimates h2 every time).

``--scaling`` then times the package's ``fit`` alone at N/2, N, 2N (M, P fixed), M/2, M,
2M and P/4, P, 4P (the default size otherwise), printing seconds and the exponent of
each growth.

Run:  python benchmarks/lmm_vs_gemma_bolt.py [--n 2000 --m 20000 --p 64 --chroms 4
      --threads 2] [--scaling]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_cohort(root, n, m, p, n_chrom, seed=0):
    """Sibships of 4 from 2 random parents each; P polygenic phenotypes (h2 0.5)."""
    from bed_reader import to_bed

    rng = np.random.default_rng(seed)
    n_fam = -(-n // 4)
    freq = rng.uniform(0.05, 0.5, m)
    G = np.empty((n_fam * 4, m), dtype=np.int8)
    for s in range(0, m, 2000):                      # bounded memory while simulating
        f = freq[s:s + 2000]
        hap = rng.binomial(1, f, size=(n_fam, 4, f.size)).astype(np.int8)
        for k in range(4):
            a = rng.integers(0, 2, size=(n_fam, f.size))
            b = rng.integers(2, 4, size=(n_fam, f.size))
            fam, snp = np.arange(n_fam)[:, None], np.arange(f.size)[None, :]
            G[k::4, s:s + 2000] = hap[fam, a, snp] + hap[fam, b, snp]
    G = G[:n]
    iid = np.array([f"s{i:06d}" for i in range(n)])
    chrom = np.repeat(np.arange(1, n_chrom + 1), -(-m // n_chrom))[:m].astype(str)
    prefix = str(root / "cohort")
    to_bed(prefix + ".bed", G, properties={
        "fid": iid, "iid": iid, "sid": np.array([f"rs{j}" for j in range(m)]),
        "chromosome": chrom, "bp_position": np.arange(m) * 1000 + 1,
        "allele_1": np.full(m, "A"), "allele_2": np.full(m, "G")})
    Z = (G - G.mean(0)) / np.maximum(G.std(0), 1e-9)
    u = Z @ rng.normal(size=(m, p)) / np.sqrt(m)
    u /= u.std(0)
    Y = np.sqrt(0.5) * u + np.sqrt(0.5) * rng.normal(size=(n, p))
    cols = [f"t{1 + (j >= p // 2)}_{j:03d}" for j in range(p)]
    pd.DataFrame(Y, index=iid, columns=cols).rename_axis("IID").to_csv(root / "pheno.tsv",
                                                                       sep="\t")
    np.savetxt(root / "pheno.txt", Y, fmt="%.8g")                        # GEMMA -p
    bolt = pd.DataFrame(Y, columns=cols)
    bolt.insert(0, "IID", iid)
    bolt.insert(0, "FID", iid)
    bolt.to_csv(root / "pheno.bolt", sep=" ", index=False)
    return prefix, cols


PACKAGE_RUN = r"""
import sys, time
t0 = time.perf_counter()
import pandas as pd
from hcl_sklearn import CrossModalGWAS
prefix, pheno, out, loco, threads = sys.argv[1:6]
Y = pd.read_csv(pheno, sep="\t", index_col=0)
t1 = time.perf_counter()
gwas = CrossModalGWAS(prefix, model="lmm", loco=loco == "1", n_jobs=int(threads)).fit(Y)
t2 = time.perf_counter()
gwas.to_tsv_gz(out, per_phenotype=True)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} "
      f"{gwas.h2_null_.to_numpy().mean():.4f}")
"""


def run_package(prefix, root, loco, threads):
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PACKAGE_RUN, prefix, str(root / "pheno.tsv"),
                          str(root / f"ours_loco{int(loco)}"), "1" if loco else "0",
                          str(threads)], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    start, fit, write, h2 = (float(x) for x in out.stdout.split())
    return wall, start, fit, write, h2


def run_gemma(prefix, root, p, runs, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    kw = dict(cwd=root, check=True, capture_output=True, env=env)
    t = time.perf_counter()
    subprocess.run(["gemma", "-bfile", prefix, "-p", "pheno.txt", "-gk", "1", "-o", "kin"],
                   **kw)
    subprocess.run(["gemma", "-bfile", prefix, "-p", "pheno.txt", "-k",
                    "output/kin.cXX.txt", "-eigen", "-o", "eig"], **kw)
    setup = time.perf_counter() - t
    each = []
    for j in range(1, runs + 1):
        t = time.perf_counter()
        subprocess.run(["gemma", "-bfile", prefix, "-p", "pheno.txt", "-n", str(j),
                        "-d", "output/eig.eigenD.txt", "-u", "output/eig.eigenU.txt",
                        "-lmm", "1", "-o", f"p{j}"], **kw)
        each.append(time.perf_counter() - t)
    return setup, float(np.mean(each)), setup + float(np.mean(each)) * p


def run_bolt(prefix, root, cols, runs, threads):
    each = []
    for j in range(runs):
        t = time.perf_counter()
        subprocess.run(["bolt", f"--bfile={prefix}", "--phenoFile=pheno.bolt",
                        f"--phenoCol={cols[j]}", "--lmmInfOnly", "--LDscoresUseChip",
                        f"--numThreads={threads}", f"--statsFile=bolt_{j}.stats"],
                       cwd=root, check=True, capture_output=True)
        each.append(time.perf_counter() - t)
    return float(np.mean(each)), float(np.mean(each)) * len(cols)


def fit_seconds(root, n, m, p, n_chrom, threads, loco=True):
    from hcl_sklearn import CrossModalGWAS

    sub = root / f"s_{n}_{m}_{p}"
    sub.mkdir()
    prefix, cols = make_cohort(sub, n, m, p, n_chrom)
    Y = pd.read_csv(sub / "pheno.tsv", sep="\t", index_col=0)
    t = time.perf_counter()
    CrossModalGWAS(prefix, model="lmm", loco=loco, n_jobs=threads).fit(Y)
    sec = time.perf_counter() - t
    shutil.rmtree(sub)
    return sec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--p", type=int, default=64)
    ap.add_argument("--chroms", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gemma-runs", type=int, default=None)
    ap.add_argument("--bolt-runs", type=int, default=None)
    ap.add_argument("--scaling", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hcl_lmm_bench_"))
    try:
        prefix, cols = make_cohort(root, args.n, args.m, args.p, args.chroms)
        print(f"cohort: N {args.n} (sibships of 4), M {args.m} on {args.chroms} chromosomes, "
              f"P {args.p}, {args.threads} threads; load average "
              f"{os.getloadavg()[0]:.2f}")
        rows = []
        for loco in (False, True):
            wall, start, fit, write, h2 = run_package(prefix, root, loco, args.threads)
            rows.append((f"package LMM, {'LOCO' if loco else 'one GRM'}", wall))
            print(f"package (loco={loco}): whole process {wall:.1f} s = start-up + reading "
                  f"{start:.2f} s + fit {fit:.1f} s + writing {write:.2f} s; mean REML h2 "
                  f"{h2:.3f}")
        ours_gemma, ours_bolt = rows[0][1], rows[1][1]
        if shutil.which("gemma"):
            k = args.gemma_runs or args.p
            setup, each, total = run_gemma(prefix, root, args.p, k, args.threads)
            est = "" if k == args.p else f" (timed {k} runs, x {args.p / k:g})"
            print(f"GEMMA -lmm 1: kinship + eigen {setup:.1f} s, {each:.1f} s per phenotype; "
                  f"{args.p} phenotypes {total:.1f} s{est}")
            print(f"  ratio GEMMA / package (one GRM): {total / ours_gemma:.1f}x")
        else:
            print("GEMMA not installed (Debian package 'gemma'): skipped")
        if shutil.which("bolt"):
            k = args.bolt_runs or args.p
            each, total = run_bolt(prefix, root, cols[:k] if k < args.p else cols, k,
                                   args.threads)
            total = each * args.p
            est = "" if k == args.p else f" (timed {k} runs, x {args.p / k:g})"
            print(f"BOLT-LMM --lmmInfOnly: {each:.1f} s per phenotype; {args.p} phenotypes "
                  f"{total:.1f} s{est}")
            print(f"  ratio BOLT / package (LOCO): {total / ours_bolt:.1f}x")
        else:
            print("BOLT-LMM not installed (Debian package 'bolt-lmm'): skipped")
        if args.scaling:
            n, m, p = args.n, args.m, args.p
            print("scaling of the package's fit (LOCO), seconds:")
            for name, values in (("N", (n // 2, n, 2 * n)), ("M", (m // 2, m, 2 * m)),
                                 ("P", (max(1, p // 4), p, 4 * p))):
                secs = []
                for v in values:
                    size = {"N": (v, m, p), "M": (n, v, p), "P": (n, m, v)}[name]
                    secs.append(fit_seconds(root, *size, args.chroms, args.threads))
                slope = np.polyfit(np.log(values), np.log(secs), 1)[0]
                print(f"  {name} = {values}: " + ", ".join(f"{s:.1f}" for s in secs)
                      + f"  (exponent {slope:.2f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
