"""Benchmark: vectorised REML vs a loop of glimix-core fits; HE at N = 20,000; GRM memory.

Run from the repository root::

    python benchmarks/heritability.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/heritability.py --quick    # small sizes, a smoke run

1. REML, 256 phenotypes, N = 2000 subjects (a mosaic of real 1000G chr22 segments):
   one eigendecomposition (timed separately) given to both engines; our vectorised
   REML vs a loop of ``glimix_core.lmm.LMM(y, X, QS, restricted=True).fit()``. Prints
   both times, the ratio, and the largest |h2 difference|. By default glimix-core runs
   on the first 16 phenotypes and its time is scaled to 256 (``--glimix-max 256`` for
   the whole loop). BLAS is limited to one thread for both engines.
2. HE regression of 256 phenotypes at N = 20,000 (GRM from 2000 SNPs, float32):
   GRM build time and HE time (estimates + analytic SEs with random-probe traces).
3. GRM peak memory at two numbers of SNPs (M and 4 M), read lazily from a PLINK file,
   each in a fresh process: Python-tracked peak (tracemalloc) and the process peak RSS
   (VmHWM, Linux).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits


def _cohort(n, m, seed):
    """n subjects x the first m SNPs, mosaics of the real 1000G chr22 panel (real LD)."""
    from hcl_sklearn.datasets.genotypes import simulate_genotypes
    from hcl_sklearn.genetics import Genotypes

    G, snps = simulate_genotypes(n, random_state=seed)
    ids = [f"mosaic{i:06d}" for i in range(n)]
    return Genotypes.from_array(np.asarray(G[:, :m], dtype=np.float32), ids,
                                snps=snps.iloc[:m].reset_index(drop=True))


def _traits(genotypes, h2, seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(genotypes.n_snps, h2.size)) / np.sqrt(genotypes.n_snps)
    G = np.zeros((genotypes.n_samples, h2.size))
    for idx, block in genotypes.iter_blocks(4096):
        G += block @ B[idx]
    G /= G.std(axis=0)
    Y = G * np.sqrt(h2) + rng.normal(size=G.shape) * np.sqrt(1 - h2)
    return pd.DataFrame(Y, index=genotypes.iid)


def bench_reml(n, n_pheno, n_snps, glimix_max):
    from glimix_core.lmm import LMM

    from hcl_sklearn.genetics import grm
    from hcl_sklearn.genetics.reml import eigen_grm, reml_h2

    big = _cohort(n, n_snps, 0)
    K = grm(big)
    h2 = np.tile([0.1, 0.3, 0.5, 0.7], n_pheno // 4 + 1)[:n_pheno]
    Y = _traits(big, h2, 1).to_numpy()
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])

    t = time.perf_counter()
    Q, s = eigen_grm(K.to_numpy())
    t_eig = time.perf_counter() - t

    t = time.perf_counter()
    ours = reml_h2(Y, X, Q, s)
    t_ours = time.perf_counter() - t

    nz = s > 1e-10 * s.max()
    QS = ((Q[:, nz], Q[:, ~nz]), s[nz])             # the same eigendecomposition
    k = min(glimix_max, n_pheno)
    ref = np.empty(k)
    t = time.perf_counter()
    for j in range(k):
        lmm = LMM(Y[:, j], X, QS, restricted=True)
        lmm.fit(verbose=False)
        ref[j] = lmm.v0 / (lmm.v0 + lmm.v1)
    t_glimix = (time.perf_counter() - t) * n_pheno / k
    diff = float(np.abs(ours["h2"][:k] - ref).max())
    bias = float(np.mean(ours["h2"] - h2))
    cover = float(np.mean(np.abs(ours["h2"] - h2) <= 1.96 * ours["h2_se"]))
    print(f"\n[1] REML, {n_pheno} phenotypes, N={n}, M={K.attrs['n_snps']}, 3 covariates")
    print(f"    eigendecomposition (shared, once):   {t_eig:8.2f} s")
    print(f"    hcl_sklearn reml_h2 (vectorised):    {t_ours:8.2f} s")
    print(f"    glimix-core LMM loop ({k} fits{'' if k == n_pheno else ', scaled to ' + str(n_pheno)}):"
          f" {t_glimix:8.2f} s")
    print(f"    speed-up: {t_glimix / t_ours:.1f}x   max |h2 ours - glimix| = {diff:.2e}")
    print(f"    vs simulated truth: mean bias {bias:+.4f}, 95% CI coverage {cover:.2f}")
    return {"eig_s": t_eig, "ours_s": t_ours, "glimix_s": t_glimix,
            "ratio": t_glimix / t_ours, "max_abs_diff": diff}


def bench_he(n, n_pheno, n_snps):
    from hcl_sklearn import HeritabilityScorer
    from hcl_sklearn.genetics import grm

    big = _cohort(n, n_snps, 3)
    t = time.perf_counter()
    K = grm(big, dtype=np.float32, block_size=1024)
    t_grm = time.perf_counter() - t
    h2 = np.tile([0.2, 0.5], n_pheno // 2 + 1)[:n_pheno]
    Y = _traits(big, h2, 4)
    t = time.perf_counter()
    res = HeritabilityScorer(grm=K, method="he").fit(Y).results_
    t_he = time.perf_counter() - t
    bias = float(np.mean(res["h2"] - h2))
    cover = float(np.mean(np.abs(res["h2"] - h2) <= 1.96 * res["h2_se"]))
    print(f"\n[2] HE, {n_pheno} phenotypes, N={n}, M={K.attrs['n_snps']} (float32 GRM, "
          f"{K.to_numpy().nbytes / 2**30:.2f} GiB)")
    print(f"    GRM build (blocks of 1024 SNPs):     {t_grm:8.2f} s")
    print(f"    HE estimates + SEs, all phenotypes:  {t_he:8.2f} s")
    print(f"    vs simulated truth: mean bias {bias:+.4f}, mean SE {res['h2_se'].mean():.4f}, "
          f"95% CI coverage {cover:.2f}")
    return {"grm_s": t_grm, "he_s": t_he}


_CHILD = r"""
import json, sys, time, tracemalloc
import numpy as np
from hcl_sklearn.genetics import Genotypes, grm
g = Genotypes.from_plink(sys.argv[1])
g = g.subset(np.arange(int(sys.argv[2])))
tracemalloc.start()
t = time.perf_counter()
K = grm(g, block_size=int(sys.argv[3]))
dt = time.perf_counter() - t
_, peak = tracemalloc.get_traced_memory()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]  # reset by exec
hwm = int(hwm[0].split()[1]) / 1024 if hwm else float("nan")
print(json.dumps({"m": int(K.attrs["n_snps"]), "peak_mib": peak / 2**20, "seconds": dt,
                  "hwm_mib": hwm, "grm_mib": K.to_numpy().nbytes / 2**20}))
"""


def bench_grm_memory(n, m_small, block_size):
    from bed_reader import to_bed

    big = _cohort(n, 15938, 5)
    m_large = min(4 * m_small, big.n_snps)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "mosaic")
        X = big.read(standardize=False, dtype=np.float32)
        to_bed(prefix + ".bed", X, properties={
            "iid": list(big.iid), "sid": list(big.snps.variant_id),
            "chromosome": list(big.snps.chrom), "bp_position": big.snps.pos.to_numpy(),
            "allele_1": list(big.snps.a1), "allele_2": list(big.snps.a2)})
        del X
        rows = []
        for m in (m_small, m_large):
            out = subprocess.run([sys.executable, "-c", _CHILD, prefix, str(m),
                                  str(block_size)], check=True, capture_output=True,
                                 text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\n[3] GRM peak memory, N={n}, lazy PLINK reads, blocks of {block_size} SNPs "
          f"(GRM itself: {rows[0]['grm_mib']:.1f} MiB)")
    for r in rows:
        print(f"    M={r['m']:6d}: tracemalloc peak {r['peak_mib']:7.1f} MiB, process peak RSS "
              f"(VmHWM) {r['hwm_mib']:7.1f} MiB, {r['seconds']:.2f} s")
    print(f"    peak ratio (4x SNPs): {rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--glimix-max", type=int, default=16,
                        help="run glimix-core on this many phenotypes and scale its time "
                             "to all of them (default 16: one fit takes seconds; 256 "
                             "for the full loop)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["reml", "he", "memory"])
    args = parser.parse_args(argv)
    q = args.quick
    # the runner is shared (2 cores): single-threaded BLAS for every engine, same for both
    threadpool_limits(1, user_api="blas")
    if "reml" not in args.skip:
        n_pheno = 32 if q else 256
        bench_reml(500 if q else 2000, n_pheno, 15938,
                   args.glimix_max)
    if "he" not in args.skip:
        bench_he(2000 if q else 20000, 32 if q else 256, 500 if q else 2000)
    if "memory" not in args.skip:
        bench_grm_memory(500 if q else 2000, 2000 if q else 3984, 1024)
    print(f"\nmax RSS of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
