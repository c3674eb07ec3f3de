"""The GWAS scan and the GRM as tasks on a dask.distributed cluster.

Why dask.distributed: it is the engine the Python genetics stack already runs on (sgkit's
GWAS and REGENIE, hail's Python side aside), it runs on a laptop (``LocalCluster``), on HPC
schedulers (dask-jobqueue: SLURM, PBS, SGE, LSF) and on Kubernetes with the same client
code, and it retries a task whose worker died. A block of SNPs is a natural task: its input
is the block's genotypes (read by the worker from the shared ``.bed``, so no genotype data
crosses the network) and the phenotype kernels (sent once to every worker); its output is
the block's rows of the result arrays. Tasks are idempotent -- a block's rows depend only on
the block -- so a retried task neither loses nor duplicates anything.

``cluster`` may be a ``distributed.Client``, a cluster object (``LocalCluster``,
``SLURMCluster``...) or a scheduler address (``"tcp://host:8786"``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np

from .scan import BlockScan, ScanResults

logger = logging.getLogger(__name__)

__all__ = ["client_for", "run_blocks_distributed", "grm_distributed"]


@contextmanager
def client_for(cluster):
    """A ``distributed.Client`` for ``cluster`` (closed on exit if made here)."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - an optional dependency
        raise ImportError("cluster= needs dask.distributed: pip install 'hcl-sklearn[dask]' "
                          "(or pip install 'dask[distributed]').") from exc
    if hasattr(cluster, "submit") and hasattr(cluster, "gather"):
        yield cluster
        return
    if not (isinstance(cluster, str) or hasattr(cluster, "scheduler_address")):
        raise TypeError("cluster must be a distributed.Client, a dask cluster object or a "
                        f"scheduler address such as 'tcp://host:8786'; got {type(cluster).__name__}.")
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


def _scatter(client, obj):
    """A future of ``obj`` held by every worker, under a key of this call's own.

    ``obj`` goes in a list of one: a dict would be scattered value by value under its own
    keys ("geno", "rows", ...), names every run on the cluster shares, so that concurrent
    runs would read each other's data. And no content hash: two runs of the same data would
    share a key, and one run's release of it can drop it while the other still needs it,
    which leaves that run's tasks waiting forever (dask/distributed#8576).
    """
    return client.scatter([obj], broadcast=True, hash=False)[0]


def _portable(scan):
    """What a worker needs to scan any block (no result arrays, no open state)."""
    return {"geno": None if scan.bed is not None else scan.geno, "groups": scan.groups,
            "bed": scan.bed, "rows": scan.rows, "n_rows": scan.n_rows,
            "block_size": scan.block_size, "sub_block": scan.sub_block, "dtype": scan.dtype,
            "maf": scan.maf, "mod_cols": scan.mod_cols, "end": scan.end,
            "n_snps": scan.n_snps, "shapes": (scan.results.beta.shape[1],
                                              scan.results.freq.shape[1],
                                              scan.results.min_lp.shape[1])}


def _one_blas_thread():
    """A task is one thread of work (parallelism comes from the tasks): one BLAS thread,
    so that worker threads x BLAS threads never oversubscribe the cores (OpenBLAS threads
    spin while waiting, and an oversubscribed machine slows down many-fold)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _scan_task(spec, start):
    """One block on a worker: its rows of every result array and its QC counts."""
    with _one_blas_thread():
        return _scan_block(spec, start)


def _scan_block(spec, start):
    P, n_groups, n_mod = spec["shapes"]
    stop = min(start + spec["block_size"],
               spec["n_snps"] if spec["end"] is None else spec["end"])
    res = ScanResults.empty(stop - start, P, n_groups, n_mod)
    scan = BlockScan(spec["geno"], spec["groups"], res, bed=spec["bed"], rows=spec["rows"],
                     n_rows=spec["n_rows"], block_size=spec["block_size"],
                     sub_block=spec["sub_block"], dtype=spec["dtype"], maf=spec["maf"],
                     mod_cols=spec["mod_cols"], end=spec["end"], n_snps=spec["n_snps"],
                     offset=start)
    qc = scan.process(start, scan.new_state())
    return start, res, qc


def run_blocks_distributed(scan, starts, cluster, *, store=None, verbose=0):
    """:func:`~.scan.run_blocks` with every block a task on ``cluster``.

    Blocks already in ``store`` are read, not sent; each finished block is written into
    ``scan.results`` (and ``store``) by this process as it arrives.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    from .scan import ScanResults  # noqa: F401  (the type the tasks return)

    qc = {"mono": 0, "low": 0}
    todo = []
    for start in starts:
        done = None if store is None else store.load(start, scan.stop(start), scan.results)
        if done is None:
            todo.append(start)
        else:
            qc["mono"] += done[0]
            qc["low"] += done[1]
    if not todo:
        return qc
    fields = [f.name for f in ScanResults.__dataclass_fields__.values()]
    bar = tqdm(total=len(todo), disable=not verbose, desc="GWAS blocks (cluster)",
               unit="block")
    try:
        with client_for(cluster) as client:
            spec = _scatter(client, _portable(scan))
            futures = client.map(_scan_task, [spec] * len(todo), todo, pure=False)
            # results fetched by this loop, in the batches that have finished: with
            # as_completed(with_results=True), a fetch that fails on a closed connection
            # is never yielded and the loop waits forever (dask/distributed#7331); here
            # the failure is raised
            for batch in as_completed(futures).batches():
                for start, part, counts in client.gather(batch):
                    stop = scan.stop(start)
                    for name in fields:
                        getattr(scan.results, name)[start:stop] = getattr(part, name)
                    if store is not None:
                        store.save(start, stop, scan.results, counts)
                    qc["mono"] += counts[0]
                    qc["low"] += counts[1]
                    bar.update(1)
    finally:
        bar.close()
    return qc


def _grm_task(genotypes, rows, lo, hi, block_size, scale):
    """Upper triangle of X'X over SNPs lo..hi (standardized as in :func:`~..grm.grm`)."""
    from ..grm import _grm_accumulate

    with _one_blas_thread():
        return _grm_accumulate(genotypes.subset(np.arange(lo, hi)), rows, block_size, scale,
                               np.float64)


def grm_distributed(genotypes, rows, *, block_size, scale, cluster, chunk_snps=None):
    """Sum of the per-chunk GRM numerators over SNP chunks run as tasks; ``(K, n_used)``.

    Each task accumulates ``chunk_snps`` SNPs (default: 8 blocks) into an ``n x n`` upper
    triangle; the partial sums are added pairwise on the cluster (a tree, so no process
    holds more than two of them at once) and the total is fetched.
    """
    M = genotypes.n_snps
    chunk = int(chunk_snps or 8 * block_size)
    ranges = [(lo, min(lo + chunk, M)) for lo in range(0, M, chunk)]
    with client_for(cluster) as client:
        # a file source pickles as its path (workers reopen it): part of each task, so a
        # task can run anywhere, again; in-memory genotypes are sent once to every worker
        in_memory = isinstance(getattr(genotypes, "_source", None), np.ndarray)
        g = _scatter(client, genotypes) if in_memory else genotypes
        parts = [client.submit(_grm_task, g, rows, lo, hi, block_size, scale, pure=False)
                 for lo, hi in ranges]
        while len(parts) > 1:
            pairs = [client.submit(_add_parts, parts[i], parts[i + 1], pure=False)
                     for i in range(0, len(parts) - 1, 2)]
            parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
        return parts[0].result()


def _add_parts(a, b):
    K, n = a
    K += b[0]
    return K, n + b[1]
