"""CrossModalGWAS vs plink2 --glm: wall time (fit, fit + writing the summary statistics,
the whole ``hcl gwas`` process), fraction of BLAS peak, peak memory.

Writes a simulated cohort (N samples x M SNPs, allele frequencies uniform in [0.05, 0.5])
as PLINK 1 files with ``bed_reader.to_bed``, P phenotypes and K covariates, then runs on
the same files and the same number of threads, side by side in each repeat:

* plink2 ``--glm hide-covar`` (one regression per SNP x phenotype, its text results
  written to disk, one file per phenotype);
* ``CrossModalGWAS.fit`` (exact OLS for every SNP x phenotype, loci included; results in
  memory), in float64 (the default, exact) and float32 (opt-in);
* writing the float64 fit's summary statistics with ``write_sumstats`` (one file per
  phenotype, GWAS-SSF columns) as Parquet and as tsv.gz;
* the whole ``hcl gwas`` command in a fresh process (start-up, reading the TSV inputs,
  fit, the long ``sumstats.tsv.gz``, loci, lambda_GC, Miami and QQ plots);
* the association kernel alone (block product ``G'[Y_r|Q]`` + statistics + p-values, one
  BLAS thread per worker thread as in ``fit``) on in-memory genotypes, whose flop rate
  is compared with this machine's dgemm / sgemm peak measured here with numpy;
* peak RSS of a fresh process that fits at two M (bounded memory: blocks are streamed,
  only the M x P result arrays grow).

Timings are the minimum over ``--repeats`` runs, everything interleaved in each repeat,
so that a busy machine slows all alike ("fit + write" is the minimum of the per-repeat
sums); the load average and the CPU time of each side are printed too.

Run:  python benchmarks/gwas_vs_plink2.py [--n 5000 --m 20000 --p 128 --k 10 --threads 2]
      python benchmarks/gwas_vs_plink2.py --device cuda --n 40000 --p 256  (GPU machine)
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_cohort(root, n, m, p, k, seed=0):
    from bed_reader import to_bed

    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.5, m)
    G = np.empty((n, m), dtype=np.int8)
    for s in range(0, m, 2000):                       # bounded memory while simulating
        G[:, s:s + 2000] = rng.binomial(2, freq[s:s + 2000], size=(n, min(2000, m - s)))
    iid = np.array([f"s{i:06d}" for i in range(n)])
    prefix = str(root / "cohort")
    to_bed(prefix + ".bed", G, properties={
        "fid": iid, "iid": iid, "sid": np.array([f"rs{j}" for j in range(m)]),
        "chromosome": np.full(m, "1"), "bp_position": np.arange(m) * 1000 + 1,
        "allele_1": np.full(m, "A"), "allele_2": np.full(m, "G")})
    C = pd.DataFrame(rng.normal(size=(n, k)), index=iid, columns=[f"c{j}" for j in range(k)])
    Y = pd.DataFrame(rng.normal(size=(n, p)), index=iid,
                     columns=[f"t{1 + (j >= p // 2)}_{j:03d}" for j in range(p)])
    Y.iloc[:, :4] += 0.2 * G[:, :4].astype(float)
    Y.iloc[:, 0] += 0.3 * C.iloc[:, 0]
    fam = pd.DataFrame({"#FID": iid, "IID": iid})
    fam.join(Y.reset_index(drop=True)).to_csv(root / "pheno.tsv", sep="\t", index=False)
    fam.join(C.reset_index(drop=True)).to_csv(root / "covar.tsv", sep="\t", index=False)
    Y.to_parquet(root / "pheno.parquet")
    C.to_parquet(root / "covar.parquet")
    # hcl's inputs: TSV with the subject id in the first column
    Y.to_csv(root / "embeddings.tsv", sep="\t", float_format="%.8g")
    C.to_csv(root / "covariates.tsv", sep="\t", float_format="%.8g")
    return prefix, G, Y, C


def gemm_peak(dtype, threads, size=4096, repeats=3):
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    b = a.T.copy()
    best = np.inf
    with threadpool_limits(threads, user_api="blas"):
        a @ b
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2.0 * size ** 3 / best / 1e9


def run_plink2(prefix, root, threads):
    """Wall time, CPU time (user + sys of its process tree) and peak RSS of plink2."""
    exe = shutil.which("plink2")
    if exe is None:
        return None
    cmd = [exe, "--bfile", prefix, "--pheno", str(root / "pheno.tsv"), "--covar",
           str(root / "covar.tsv"), "--glm", "hide-covar", "--threads", str(threads),
           "--out", str(root / "plink2")]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    hwm = 0.0
    while proc.poll() is None:  # VmHWM of plink2 and its children (/usr/bin/plink2 may be
        for pid in process_tree(proc.pid):  # a dispatch script); ru_maxrss of children
            hwm = max(hwm, vm_hwm_mib(pid))  # would count this process at fork time
        time.sleep(0.01)
    wall = time.perf_counter() - t
    log = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(log[-3000:])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, hwm, ru.ru_utime + ru.ru_stime


def run_hcl_gwas(prefix, root, threads, extra=()):
    """Wall time and CPU time (user + sys) of the whole ``hcl gwas`` process."""
    exe = Path(sys.executable).with_name("hcl")
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "hcl_sklearn.app.cli"])
    cmd += ["gwas", str(root / "embeddings.tsv"), "--bfile", prefix, "--covariates",
            str(root / "covariates.tsv"), "--out", str(root / "hcl_gwas"), "--quiet",
            *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    return wall, ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime


def startup_seconds(code, repeats=3):
    """Wall time of a fresh ``python -c code`` (the minimum of a few)."""
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - t)
    return best


def write_ssf(gw, out, fmt, threads):
    """Per-phenotype GWAS-SSF files of a fitted estimator (``to_parquet`` /
    ``to_tsv_gz`` with ``per_phenotype=True``): wall, CPU seconds and bytes written."""
    shutil.rmtree(out, ignore_errors=True)
    write = gw.to_parquet if fmt == "parquet" else gw.to_tsv_gz
    c, t = time.process_time(), time.perf_counter()
    files = write(out, per_phenotype=True, n_jobs=threads)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return wall, cpu, sum(f.stat().st_size for f in files)


def process_tree(pid):
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def vm_hwm_mib(pid="self"):
    """Peak resident set size (VmHWM) of a process in MiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def kernel_rate(G, Y, C, threads, block, device, dtype="float64", repeats=3):
    """Flop rate of the association kernel (block product + statistics + p-values) on
    in-memory genotypes, ``threads`` worker threads with one BLAS thread each (as
    ``fit``; on a GPU one thread). Returns GFLOP/s and seconds."""
    import threading

    from threadpoolctl import threadpool_limits

    from hcl_sklearn.genetics.gwas.association import AssociationKernel, covariate_basis

    Q = covariate_basis(C.to_numpy())
    backend = "numpy" if device == "cpu" else "torch"
    kern = AssociationKernel(Y.to_numpy(), Q, backend=backend, device=device, dtype=dtype)
    n, p = G.shape[0], Y.shape[1]
    width = p + Q.shape[1]                        # useful flops (kern.width is padded)
    m = min(G.shape[1], 8192)
    # decoded blocks as fit gets them: one row per SNP (G'), exact counts, with sums
    blocks = []
    for s in range(0, m, block):
        Gt = np.ascontiguousarray(G[:, s:s + block].T, dtype=dtype)
        G64 = Gt.astype(np.float64)
        blocks.append((Gt, G64.sum(axis=1), np.einsum("ij,ij->i", G64, G64)))
    n_workers = threads if device == "cpu" else 1

    def work(part):
        prod = np.empty((block, kern.width), dtype=dtype)
        outs = [np.empty((block, p)) for _ in range(4)]
        for Gt, gs, g2 in part:
            k = Gt.shape[0]
            kern.product(Gt.T, gs, out=prod[:k])
            kern.statistics(prod[:k], gs, g2, *(o[:k] for o in outs[:3]),
                            log10_p=outs[3][:k])

    best = np.inf
    with threadpool_limits(1 if n_workers > 1 else threads, user_api="blas"):
        work(blocks[:1])                          # warm-up (p-value table of this df)
        for _ in range(repeats):
            ths = [threading.Thread(target=work, args=(blocks[i::n_workers],))
                   for i in range(n_workers)]
            t = time.perf_counter()
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            if device != "cpu":
                import torch

                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return 2.0 * n * m * width / best / 1e9, best


def child(args):
    """Fit at M SNPs in this fresh process and print peak RSS (MiB) as JSON."""
    import logging

    from hcl_sklearn.genetics import Genotypes
    from hcl_sklearn.genetics.gwas import CrossModalGWAS

    logging.disable(logging.WARNING)
    root = Path(args.child_root)
    g = Genotypes.from_plink(str(root / "cohort")).subset(np.arange(args.child_m))
    Y = pd.read_parquet(root / "pheno.parquet")
    C = pd.read_parquet(root / "covar.parquet")
    base = vm_hwm_mib()
    t = time.perf_counter()
    CrossModalGWAS(g, covariates=C, n_jobs=args.threads, block_size=args.block,
                   device=args.device).fit(Y)
    print(json.dumps({"m": args.child_m, "seconds": time.perf_counter() - t,
                      "rss_mib": vm_hwm_mib(),
                      "rss_before_fit_mib": base}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--p", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-plink2", action="store_true")
    ap.add_argument("--skip-cli", action="store_true", help="do not time `hcl gwas`")
    ap.add_argument("--child-root", help=argparse.SUPPRESS)
    ap.add_argument("--child-m", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_root:
        return child(args)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from threadpoolctl import threadpool_limits

    from hcl_sklearn.genetics.gwas import CrossModalGWAS

    print(f"N={args.n} M={args.m} P={args.p} K={args.k} threads={args.threads} "
          f"block={args.block} device={args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        prefix, G, Y, C = make_cohort(root, args.n, args.m, args.p, args.k)
        print(f"simulated + wrote .bed/.bim/.fam in {time.perf_counter() - t:.1f} s")

        dpeak = gemm_peak(np.float64, args.threads)
        speak = gemm_peak(np.float32, args.threads)
        dpeak1 = gemm_peak(np.float64, 1)
        speak1 = gemm_peak(np.float32, 1)
        print(f"machine peak (numpy 4096^3): {args.threads} threads dgemm {dpeak:.1f} "
              f"GFLOP/s, sgemm {speak:.1f} GFLOP/s; 1 thread dgemm {dpeak1:.1f}, sgemm "
              f"{speak1:.1f}")

        peaks = {"float64": (dpeak, dpeak1), "float32": (speak, speak1)}
        if args.device != "cpu":
            import torch

            for dt, tdt in (("float64", torch.float64), ("float32", torch.float32)):
                a = torch.randn(8192, 8192, dtype=tdt, device=args.device)
                a @ a
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(3):
                    a @ a
                torch.cuda.synchronize()
                dev = 3 * 2 * 8192 ** 3 / (time.perf_counter() - t) / 1e9
                peaks[dt] = (dev, dev)
            print(f"device peak (torch 8192^3): dgemm {peaks['float64'][0]:.1f}, sgemm "
                  f"{peaks['float32'][0]:.1f} GFLOP/s")
        from hcl_sklearn.genetics.gwas.engine import _SUB_BLOCK_BYTES

        # the sub-block size fit uses (decode + product)
        sub = min(args.block, max(256, _SUB_BLOCK_BYTES // (8 * args.n)))
        sub = -(-args.block // -(-args.block // sub))
        for dt in ("float64", "float32"):
            gemm = "dgemm" if dt == "float64" else "sgemm"
            rate, sec = kernel_rate(G, Y, C, args.threads, sub, args.device, dt)
            line = (f"association kernel {dt} (G'[Y_r|Q] + statistics + p-values), "
                    f"{args.threads} threads: {rate:.1f} GFLOP/s = "
                    f"{rate / peaks[dt][0]:.0%} of {gemm} peak ({sec:.3f} s)")
            if args.device == "cpu" and args.threads > 1:
                rate1, _ = kernel_rate(G, Y, C, 1, sub, args.device, dt)
                line += f"; 1 thread {rate1:.1f} GFLOP/s = {rate1 / peaks[dt][1]:.0%}"
            print(line)
        del G

        def fit(dt):
            with threadpool_limits(args.threads, user_api="blas"):
                c, t = time.process_time(), time.perf_counter()
                est = CrossModalGWAS(prefix, covariates=C, n_jobs=args.threads,
                                     block_size=args.block, device=args.device,
                                     dtype=dt).fit(Y)
                return est, time.perf_counter() - t, time.process_time() - c

        t_fit = {"float64": [], "float32": []}
        cpu_fit = {"float64": [], "float32": []}
        t_pl, cpu_pl, rss_pl = [], [], 0.0
        # writes of the float64 fit (wall, CPU, bytes) and the hcl gwas process
        t_wr = {"parquet": [], "tsv.gz": []}
        t_cli, cpu_cli, t_lean = [], [], []
        run_pl = not args.skip_plink2 and args.device == "cpu" and shutil.which("plink2")
        run_cli = not args.skip_cli and args.device == "cpu"
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        for r in range(args.repeats):
            for dt in ("float64", "float32"):
                gw, wall, cpu = fit(dt)
                t_fit[dt].append(wall)
                cpu_fit[dt].append(cpu)
                if dt == "float64":
                    gwas64 = gw
                else:
                    gwas32 = gw
            line = (f"run {r + 1}: fit float64 {t_fit['float64'][-1]:.3f} s (CPU "
                    f"{cpu_fit['float64'][-1]:.2f} s), float32 {t_fit['float32'][-1]:.3f} s")
            for fmt in ("parquet", "tsv.gz"):
                t_wr[fmt].append(write_ssf(gwas64, root / f"ssf_{fmt}", fmt, args.threads))
                line += f"; write {fmt} {t_wr[fmt][-1][0]:.2f} s (CPU {t_wr[fmt][-1][1]:.2f})"
            if run_pl:
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, hwm, _ = run_plink2(prefix, root, args.threads)
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t_pl.append(wall)
                cpu_pl.append(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
                rss_pl = max(rss_pl, hwm)
                line += f"; plink2 {wall:.2f} s (CPU {cpu_pl[-1]:.2f} s)"
            if run_cli:
                wall, cpu = run_hcl_gwas(prefix, root, args.threads)
                t_cli.append(wall)
                cpu_cli.append(cpu)
                # the same statistics and loci as Parquet, without the figures
                t_lean.append(run_hcl_gwas(prefix, root, args.threads,
                                           ("--format", "parquet", "--no-plots"))[0])
                line += (f"; hcl gwas {wall:.2f} s (CPU {cpu:.2f} s), --format parquet "
                         f"--no-plots {t_lean[-1]:.2f} s")
            print(line + f"; load {os.getloadavg()[0]:.2f}", flush=True)
        for dt in ("float64", "float32"):
            print(f"CrossModalGWAS.fit dtype={dt} (read .bed, OLS all pairs, loci): "
                  f"{min(t_fit[dt]):.3f} s (min of {args.repeats})")
        rows = int(np.isfinite(gwas64._t).sum())
        fit_plus = {}
        for fmt in ("parquet", "tsv.gz"):
            wall = [w for w, _, _ in t_wr[fmt]]
            fit_plus[fmt] = min(f + w for f, w in zip(t_fit["float64"], wall))
            print(f"write_sumstats {fmt}, one GWAS-SSF file per phenotype ({args.p} files, "
                  f"{rows} rows, {t_wr[fmt][-1][2] / 2 ** 20:.0f} MiB): {min(wall):.2f} s "
                  f"(CPU {min(c for _, c, _ in t_wr[fmt]):.2f} s); fit + write "
                  f"{fit_plus[fmt]:.2f} s")
        with threadpool_limits(args.threads, user_api="blas"):
            t = time.perf_counter()
            gwas64.to_tsv_gz(root / "ours.tsv.gz")
            t_long = time.perf_counter() - t
        print(f"CrossModalGWAS.to_tsv_gz (one long file, what hcl gwas writes): "
              f"{t_long:.2f} s")
        if run_cli:
            imp_cli = startup_seconds("import hcl_sklearn.app.cli")
            imp_gwas = startup_seconds(           # what `hcl gwas` imports
                "import pandas; from hcl_sklearn.genetics.gwas.engine import GWASEngine")
            imp_est = startup_seconds(            # what a script using the estimator does
                "import pandas; from hcl_sklearn.genetics.gwas import CrossModalGWAS")
            imp_mpl = startup_seconds("import matplotlib; matplotlib.use('Agg'); "
                                      "import matplotlib.pyplot")
            print(f"hcl gwas process (start-up, TSV inputs, fit, sumstats.tsv.gz, loci, "
                  f"plots): {min(t_cli):.2f} s (CPU {min(cpu_cli):.2f} s); python start-up "
                  f"+ `import hcl_sklearn.app.cli` {imp_cli:.2f} s; python + pandas + the "
                  f"GWAS engine (no scikit-learn) {imp_gwas:.2f} s (with scikit-learn, "
                  f"CrossModalGWAS: {imp_est:.2f} s); python + pyplot (plots only) "
                  f"{imp_mpl:.2f} s; with "
                  f"--format parquet --no-plots {min(t_lean):.2f} s")
        if args.skip_plink2 or args.device != "cpu":
            pass
        elif not run_pl:
            print("plink2 not found on PATH: no comparison")
        else:
            tp, t64, t32 = min(t_pl), min(t_fit["float64"]), min(t_fit["float32"])
            print(f"plink2 --glm hide-covar --threads {args.threads} (text results written)"
                  f": {tp:.2f} s (min of {args.repeats}; peak RSS {rss_pl:.0f} MiB)")
            print(f"speed-up vs plink2 (wall time ratio): float64 fit {tp / t64:.1f}x (goal "
                  f">= 8x), float32 fit {tp / t32:.1f}x; float64 fit + parquet "
                  f"{tp / fit_plus['parquet']:.1f}x (goal >= 5x), fit + tsv.gz "
                  f"{tp / fit_plus['tsv.gz']:.1f}x (goal >= 2x)"
                  + (f"; whole hcl gwas process {tp / min(t_cli):.1f}x (goal >= 3x), "
                     f"with --format parquet --no-plots {tp / min(t_lean):.1f}x"
                     if run_cli else ""))
            print(f"CPU time ratio (plink2 / fit float64): "
                  f"{min(cpu_pl) / min(cpu_fit['float64']):.1f}x")
            for dt, gw in (("float64", gwas64), ("float32", gwas32)):
                dlp, rel = [], []
                for ph in Y.columns[:4]:
                    pl = pd.read_csv(root / f"plink2.{ph}.glm.linear", sep="\t")
                    ours = gw.sumstats_.query("phenotype == @ph")
                    mm = ours.merge(pl, left_on="variant_id", right_on="ID")
                    flip = np.where(mm["A1"] == mm["effect_allele"], 1, -1)
                    dlp.append(np.abs(np.log10(mm["P"]) + mm["neg_log10_p"]).max())
                    rel.append(np.abs(mm["beta"] / (flip * mm["BETA"]) - 1).max())
                print(f"check ({dt} run) vs plink2 ({len(mm)} SNPs x {len(dlp)} "
                      f"phenotypes): max |d log10 p| {max(dlp):.2e}, max rel d beta "
                      f"{max(rel):.2e}")
            # the written text (7 significant digits) against plink2's
            ph = Y.columns[0]
            ours = pd.read_csv(root / "ssf_tsv.gz" / f"{ph}.tsv.gz", sep="\t")
            pl = pd.read_csv(root / f"plink2.{ph}.glm.linear", sep="\t")
            mm = ours.merge(pl, left_on="variant_id", right_on="ID")
            flip = np.where(mm["A1"] == mm["effect_allele"], 1, -1)
            print(f"check of the written {ph}.tsv.gz vs plink2 ({len(mm)} SNPs): max |d "
                  f"log10 p| {np.abs(np.log10(mm['P']) + mm['neg_log10_p']).max():.2e}, "
                  f"max rel d beta {np.abs(mm['beta'] / (flip * mm['BETA']) - 1).max():.2e}")

        for m in (args.m // 4, args.m):
            out = subprocess.run(
                [sys.executable, __file__, "--child-root", tmp, "--child-m", str(m),
                 "--threads", str(args.threads), "--block", str(args.block),
                 "--device", args.device],
                capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res_mib = 4 * m * args.p * 8 / 2 ** 20
            print(f"peak RSS at M={m}: {r['rss_mib']:.0f} MiB (before fit "
                  f"{r['rss_before_fit_mib']:.0f} MiB; M x P result arrays "
                  f"{res_mib:.0f} MiB; fit {r['seconds']:.2f} s)")


if __name__ == "__main__":
    main()
