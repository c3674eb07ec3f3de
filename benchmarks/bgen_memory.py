"""Peak memory of a GWAS streaming BGEN dosages block by block, at two numbers of SNPs.

A simulated cohort (real chr22 LD, ``--n`` subjects) is written as PLINK, exported to BGEN
1.2 (8-bit) by plink2 at M = 4,000 and M = 15,878 SNPs, and the GWAS of ``--p`` phenotypes
runs in a fresh process per file. Each child reports its peak RSS (``ru_maxrss``) and the
part of it the result arrays take (M x P x 4 float64 + per-SNP arrays). Blocks are read one
variant at a time by cbgen, so what grows with M is the variant table and the result arrays,
not the genotypes. The fit's own peak is measured with tracemalloc (numpy's allocations are
traced; the process's RSS high-water mark is set by the imports, ~250 MiB, and hides it).
Needs plink2 and cbgen. Usage::

    python benchmarks/bgen_memory.py [--n 2000 --p 16]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
import numpy as np, pandas as pd
from hcl_sklearn import CrossModalGWAS
from hcl_sklearn.genetics import Genotypes
path, ytsv, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
Y = pd.read_csv(ytsv, sep="\\t", index_col=0)
Y.index = Y.index.astype(str)
import tracemalloc
tracemalloc.start()
t0 = time.perf_counter()
g = Genotypes.from_bgen(path)
gw = CrossModalGWAS(g, block_size=block, n_jobs=1).fit(Y)
dt = time.perf_counter() - t0
traced = tracemalloc.get_traced_memory()[1] / 2**20
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
M, P = g.n_snps, Y.shape[1]
print(json.dumps({"M": M, "P": P, "N": len(Y), "seconds": dt, "rss_after_imports_mib": base,
                  "peak_rss_mib": peak, "peak_traced_mib": traced, "result_arrays_mib": (4 * M * P + 6 * M) * 8 / 2**20}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--p", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=1024)
    args = ap.parse_args()
    if shutil.which("plink2") is None:
        sys.exit("needs plink2 (Debian: apt-get install plink2)")
    import numpy as np
    import pandas as pd
    from bed_reader import to_bed

    from hcl_sklearn.datasets import make_paired_cohort

    b = make_paired_cohort(args.n, shape=None, n_causal=5, n_pcs=0, random_state=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = np.asarray(b.subject_ids).astype(str)
        to_bed(str(tmp / "all.bed"), np.asarray(b.genotypes, dtype=np.int8), count_A1=True,
               properties={"fid": ids, "iid": ids, "chromosome": b.snps["chrom"].astype(str),
                           "sid": b.snps["id"].astype(str), "bp_position": b.snps["pos"],
                           "allele_1": b.snps["a1"].astype(str),
                           "allele_2": b.snps["a2"].astype(str)})
        rng = np.random.default_rng(0)
        Y = pd.DataFrame(rng.standard_normal((args.n, args.p)), index=ids,
                         columns=[f"t{1 + (j % 2)}_{j:03d}" for j in range(args.p)])
        Y.to_csv(tmp / "Y.tsv", sep="\t")
        rows = []
        for m in (4000, len(b.snps) - 1):
            out = tmp / f"m{m}"
            subprocess.run(["plink2", "--bfile", str(tmp / "all"), "--thin-count", str(m),
                            "--seed", "1", "--export", "bgen-1.2", "bits=8", "ref-first",
                            "--out", str(out), "--silent"], check=True)
            proc = subprocess.run([sys.executable, "-c", CHILD, str(out) + ".bgen",
                                   str(tmp / "Y.tsv"), str(args.block_size)],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = pd.DataFrame(rows)
    print(table.round(1).to_string(index=False))
    d = table.iloc[1] - table.iloc[0]
    print(f"peak traced allocations (numpy + Python, during the fit) grow "
          f"{d['peak_traced_mib']:.1f} MiB for {int(d['M'])} more SNPs "
          f"({d['peak_traced_mib'] * 2**20 / d['M']:.0f} bytes per SNP); the result arrays "
          f"account for {d['result_arrays_mib']:.1f} MiB of it. Peak RSS (the process's "
          "high-water mark, set by the imports) stays put. A full genotype matrix of "
          f"the larger file would be {args.n * table['M'].iloc[1] * 8 / 2**20:.0f} MiB "
          "(float64).")


if __name__ == "__main__":
    main()
