"""Run the whole test suite under several CPU math kernels and thread counts.

Run by hand (``make test-kernels``), never in CI: CI runs the suite once, with the
machine's own kernels, and must not change these variables. This script checks that no
test depends on the kernel it was written on, by running the suite once per row of

* OpenBLAS kernel (numpy and scipy): ``OPENBLAS_CORETYPE`` = Haswell, SkylakeX,
  Sandybridge (OpenBLAS maps ``Zen`` to its Haswell kernels, so Zen is not a separate row;
  the script prints what each row really loaded, read with threadpoolctl);
* PyTorch's kernels, paired with it: ``ATEN_CPU_CAPABILITY`` (avx2 / avx512 / default),
  ``ONEDNN_MAX_CPU_ISA`` (convolutions) and ``MKL_ENABLE_INSTRUCTIONS`` (torch's BLAS);
* 1 and 2 BLAS / OpenMP / torch threads per pytest worker.

Usage::

    python tests/kernel_matrix.py                 # the 6 rows, pytest -n 2 each
    python tests/kernel_matrix.py --kernels Haswell --threads 1 -- -k gwas

Each row writes a JUnit XML under ``--out`` (default ``kernel_runs/``) and the script ends
with a table of pass / fail / skip / xfail counts and wall times, and the names of the
tests that failed in any row. Exit status 1 if any row failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# OpenBLAS kernel -> the torch settings of the same instruction-set generation
TORCH_ISA = {
    "Haswell": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "SkylakeX": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
                 "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "Zen": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "Sandybridge": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX",
                    "MKL_ENABLE_INSTRUCTIONS": "AVX"},
}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

PROBE = """
import threadpoolctl, torch
seen = sorted({(i["internal_api"], i.get("architecture") or "-", i["num_threads"])
               for i in threadpoolctl.threadpool_info()})
print("; ".join(f"{a} {k} x{t}" for a, k, t in seen),
      f"; torch {torch.backends.cpu.get_cpu_capability()} x{torch.get_num_threads()}")
"""


def row_env(kernel, threads):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    env["OPENBLAS_CORETYPE"] = kernel
    env.update(TORCH_ISA[kernel])
    for var in THREAD_VARS:
        env[var] = str(threads)
    return env


def counts(junit):
    root = ET.parse(junit).getroot()
    out = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0, "failures": []}
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        skipped = case.find("skipped")
        if "failure" in tags or "error" in tags:
            out["failed"] += 1
            out["failures"].append(name)
        elif skipped is not None:
            key = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
            out[key] += 1
        else:
            out["passed"] += 1
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", nargs="+", default=["Haswell", "SkylakeX", "Sandybridge"],
                        choices=sorted(TORCH_ISA))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--workers", default="2", help="pytest-xdist workers (-n)")
    parser.add_argument("--out", default="kernel_runs", type=Path)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kernel in args.kernels:
        for threads in args.threads:
            env = row_env(kernel, threads)
            probe = subprocess.run([sys.executable, "-c", PROBE], env=env, text=True,
                                   capture_output=True).stdout.strip()
            junit = args.out / f"{kernel}-t{threads}.xml"
            log = args.out / f"{kernel}-t{threads}.log"
            print(f"== {kernel}, {threads} thread(s): {probe}", flush=True)
            start = time.perf_counter()
            with open(log, "w") as fh:
                rc = subprocess.call([sys.executable, "-m", "pytest", "-n", args.workers, "-q",
                                      "-p", "no:cacheprovider", f"--junitxml={junit}",
                                      *args.pytest_args], env=env, stdout=fh,
                                     stderr=subprocess.STDOUT)
            wall = time.perf_counter() - start
            c = counts(junit) if junit.exists() else {"passed": 0, "failed": -1, "skipped": 0,
                                                      "xfailed": 0, "failures": ["(no report)"]}
            rows.append((kernel, threads, probe, rc, wall, c))
            print(f"   rc {rc}: {c['passed']} passed, {c['failed']} failed, "
                  f"{c['skipped']} skipped, {c['xfailed']} xfailed in {wall:.0f} s "
                  f"(log {log})", flush=True)
    print("\n| OPENBLAS_CORETYPE | threads | loaded kernels | passed | failed | skipped | "
          "xfailed | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for kernel, threads, probe, rc, wall, c in rows:
        print(f"| {kernel} | {threads} | {probe} | {c['passed']} | {c['failed']} | "
              f"{c['skipped']} | {c['xfailed']} | {wall:.0f} |")
    failed = sorted({f for *_, c in rows for f in c["failures"]})
    for name in failed:
        print("FAILED in some row:", name)
    return int(bool(failed) or any(r[3] not in (0,) for r in rows))


if __name__ == "__main__":
    sys.exit(main())
