"""GWAS scan and GRM: dask LocalCluster (2 worker processes) vs one process, side by side.

The cohort of ``benchmarks/gwas_vs_plink2.py`` (N 5000, M 20,000 SNPs in a PLINK .bed,
P 128 phenotypes, K 10 covariates). The single process uses ``n_jobs`` threads; the
cluster ``n_workers`` processes of one thread each, reading their blocks from the .bed.
Also the per-block throughput the scaling model of docs/scaling.md starts from. Prints the
wall times (best of ``--repeats``) and the ratios. Usage::

    python benchmarks/gwas_cluster.py [--n 5000 --m 20000 --p 128 --workers 2 --repeats 3]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gwas_vs_plink2 import make_cohort  # noqa: E402


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--p", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from hcl_sklearn import CrossModalGWAS
    from hcl_sklearn.genetics import Genotypes, grm

    threads = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        prefix, _, Y, C = make_cohort(Path(tmp), args.n, args.m, args.p, args.k)
        g = Genotypes.from_plink(prefix)
        kw = dict(covariates=C, block_size=args.block_size)
        t_single, ref = best(lambda: CrossModalGWAS(g, n_jobs=threads, **kw).fit(Y),
                             args.repeats)
        # decode-dominated: 2 phenotypes (the product is 64x smaller than at P 128)
        t_p2, _ = best(lambda: CrossModalGWAS(g, n_jobs=1, covariates=C,
                                              block_size=args.block_size).fit(Y.iloc[:, :2]),
                       args.repeats)
        t_p1t, _ = best(lambda: CrossModalGWAS(g, n_jobs=1, **kw).fit(Y), args.repeats)
        t_grm1, K1 = best(lambda: grm(g.subset(np.arange(min(args.m, 5000)))), 1)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as lc, Client(lc) as client:
            t_start = time.perf_counter()
            client.run(lambda: __import__("hcl_sklearn.genetics.gwas.scan"))  # warm workers
            t_warm = time.perf_counter() - t_start
            t_cluster, got = best(lambda: CrossModalGWAS(g, cluster=client, **kw).fit(Y),
                                  args.repeats)
            t_grm2, K2 = best(lambda: grm(g.subset(np.arange(min(args.m, 5000))),
                                          cluster=client), 1)
        same = np.allclose(ref._log10_p, got._log10_p, rtol=1e-12, atol=0)
        dK = float(np.abs(K1.to_numpy() - K2.to_numpy()).max())
    n_blocks = -(-args.m // args.block_size)
    print(f"N {args.n}, M {args.m}, P {args.p}, K {args.k}; {os.cpu_count()} cores; "
          f"{n_blocks} blocks of {args.block_size} SNPs")
    print(f"GWAS one process ({threads} threads):      {t_single:7.3f} s")
    print(f"GWAS LocalCluster ({args.workers} workers x 1 thread): {t_cluster:7.3f} s "
          f"(+ {t_warm:.2f} s worker warm-up, once)  ratio single/cluster "
          f"{t_single / t_cluster:.2f}; results equal: {same}")
    print(f"GRM (N {args.n}, 5000 SNPs) one process {t_grm1:.3f} s, cluster {t_grm2:.3f} s; "
          f"max |dK| {dK:.1e}")
    per_block = t_p1t / n_blocks
    print(f"one thread, whole fit: P {args.p} {t_p1t:.3f} s, P 2 {t_p2:.3f} s")
    print(f"per-block (one thread, P {args.p}): {per_block * 1e3:.1f} ms per {args.block_size} "
          f"SNPs x N {args.n} -> {args.block_size * args.p * args.n / per_block / 1e9:.2f} "
          "G SNP x phenotype x sample / s (fit overheads included)")
    print(f"decode + per-SNP work (one thread, P 2): "
          f"{args.m * args.n / t_p2 / 1e9:.2f} G genotypes / s")


if __name__ == "__main__":
    main()
