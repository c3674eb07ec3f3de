"""CrossModalGWAS(out_dir=...): per-block results on disk, resume after SIGKILL, another
run's folder refused, a full disk leaves the finished blocks and the run resumable."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from hcl_sklearn import CrossModalGWAS
from hcl_sklearn.datasets import make_paired_cohort
from hcl_sklearn.genetics import Genotypes
from hcl_sklearn.genetics.gwas.checkpoint import OutDirMismatchError

BLOCK = 256


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """400 simulated subjects on the real chr22 panel, written as PLINK 1 (the .bed path
    of the scan), 6 phenotypes of two modalities, covariates."""
    from conftest import write_cohort_bed

    b = make_paired_cohort(400, shape=None, n_causal=5, n_pcs=2, random_state=3)
    tmp = tmp_path_factory.mktemp("resume")
    prefix = write_cohort_bed(tmp / "geno", b)
    F = b.truth.factor_values
    Y = pd.DataFrame({"t1_0": F["shape_1"], "t1_1": F["t1_myelin"], "t1_2": F["noise_1"],
                      "t2_0": F["shape_1"] + F["t2_wmh"], "t2_1": F["shape_2"],
                      "t2_2": F["noise_2"]})
    Y.index = Y.index.astype(str)
    Y.to_csv(tmp / "Y.tsv", sep="\t")
    b.covariates.to_csv(tmp / "cov.tsv", sep="\t")
    # as the child process reads them (the float32 PCs change in the text round trip,
    # and the run fingerprint sees that)
    cov = pd.read_csv(tmp / "cov.tsv", sep="\t", index_col=0)
    cov.index = cov.index.astype(str)
    ref = CrossModalGWAS(Genotypes.from_plink(str(prefix)), covariates=cov).fit(Y)
    return {"tmp": tmp, "prefix": prefix, "Y": Y, "cov": cov, "ref": ref}


def _same_results(a, b):
    # same blocks, same kernels: the statistics agree to float64 roundoff of the block
    # products (the reference run chose its own block size: other BLAS call shapes)
    for x, y in ((a._beta, b._beta), (a._se, b._se), (a._log10_p, b._log10_p)):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-300)
    assert a.snps_["variant_id"].equals(b.snps_["variant_id"])
    assert {m: len(v) for m, v in a.loci_.items()} == {m: len(v) for m, v in b.loci_.items()}


def test_rerun_reads_every_block_and_gives_the_same_results(cohort, tmp_path):
    g = Genotypes.from_plink(str(cohort["prefix"]))
    first = CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path,
                           block_size=BLOCK).fit(cohort["Y"])
    n_blocks = -(-g.n_snps // BLOCK)
    assert first.block_store_.n_written == n_blocks and first.block_store_.n_loaded == 0
    again = CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path,
                           block_size=BLOCK).fit(cohort["Y"])
    assert again.block_store_.n_written == 0 and again.block_store_.n_loaded == n_blocks
    _same_results(cohort["ref"], first)
    for x, y in ((first._beta, again._beta), (first._log10_p, again._log10_p)):
        np.testing.assert_array_equal(x, y)      # read back bit for bit
    assert len(list((tmp_path / "blocks").glob("*.npz"))) == n_blocks


_CHILD = textwrap.dedent("""
    import os, random, signal, sys, threading, time
    import pandas as pd
    from hcl_sklearn import CrossModalGWAS
    from hcl_sklearn.genetics import Genotypes
    from hcl_sklearn.genetics.gwas import scan

    prefix, ydir, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    Y = pd.read_csv(f"{ydir}/Y.tsv", sep="\\t", index_col=0)
    Y.index = Y.index.astype(str)
    cov = pd.read_csv(f"{ydir}/cov.tsv", sep="\\t", index_col=0)
    cov.index = cov.index.astype(str)
    if delay > 0:
        # slow each block down (20 ms: the scan takes >= 0.6 s) and, from the start of the
        # scan, SIGKILL this process after `delay` s from a timer: no clean-up runs
        real, started = scan.BlockScan.process, []
        def slow(self, start, st):
            if not started:
                started.append(1)
                threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
            time.sleep(0.02)
            return real(self, start, st)
        scan.BlockScan.process = slow
    CrossModalGWAS(Genotypes.from_plink(prefix), covariates=cov, out_dir=out,
                   block_size=int(sys.argv[5]), n_jobs=2).fit(Y)
    print("finished")
""")


def test_sigkill_mid_scan_then_resume_gives_the_same_results(cohort, tmp_path):
    """A subprocess is SIGKILLed at a random moment of the scan (62 blocks of 20+ ms on 2
    threads, killed 0.05-0.5 s after its first block started); the rerun reads the
    finished blocks, computes the rest and equals an uninterrupted run."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = tmp_path / "out"
    g = Genotypes.from_plink(str(cohort["prefix"]))
    n_blocks = -(-g.n_snps // BLOCK)
    rng = np.random.default_rng()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for attempt in range(6):                     # until a kill lands inside the scan
        delay = float(rng.uniform(0.05, 0.5))
        proc = subprocess.run([sys.executable, str(script), str(cohort["prefix"]),
                               str(cohort["tmp"]), str(out), str(delay), str(BLOCK)],
                              capture_output=True, text=True, env=env, timeout=300)
        done = len(list((out / "blocks").glob("*.npz"))) if (out / "blocks").exists() else 0
        if proc.returncode == -signal.SIGKILL and 0 < done < n_blocks:
            break
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
        if proc.returncode == 0:                 # finished before the timer: start over
            import shutil
            shutil.rmtree(out)
    else:
        pytest.fail("no kill landed inside the scan in 6 attempts")
    resumed = CrossModalGWAS(g, covariates=cohort["cov"], out_dir=out,
                             block_size=BLOCK).fit(cohort["Y"])
    assert resumed.block_store_.n_loaded == done
    assert resumed.block_store_.n_written == n_blocks - done
    assert not list((out / "blocks").glob("*.tmp"))
    _same_results(cohort["ref"], resumed)


def test_another_runs_folder_is_refused(cohort, tmp_path):
    g = Genotypes.from_plink(str(cohort["prefix"]))
    CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path, block_size=BLOCK).fit(
        cohort["Y"].iloc[:, :3])
    cases = [(dict(), cohort["Y"], "phenotypes"),
             (dict(maf=0.05), cohort["Y"].iloc[:, :3], "settings"),
             (dict(covariates=cohort["cov"].iloc[:, :2]), cohort["Y"].iloc[:, :3],
              "covariates")]
    for kw, Y, what in cases:
        params = dict(covariates=cohort["cov"], out_dir=tmp_path, block_size=BLOCK)
        params.update(kw)
        with pytest.raises(OutDirMismatchError, match=f"different run.*{what}"):
            CrossModalGWAS(g, **params).fit(Y)
    # block files without their run.json: whose they are is unknown
    (tmp_path / "run.json").unlink()
    with pytest.raises(OutDirMismatchError, match="no run.json"):
        CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path,
                       block_size=BLOCK).fit(cohort["Y"].iloc[:, :3])
    other = tmp_path.parent / (tmp_path.name + "_bad")
    other.mkdir()
    (other / "run.json").write_text("{not json")
    with pytest.raises(OutDirMismatchError, match="unreadable run.json"):
        CrossModalGWAS(g, out_dir=other).fit(cohort["Y"])


def test_full_disk_keeps_finished_blocks_and_resumes(cohort, tmp_path, monkeypatch):
    """ENOSPC on the 10th block file (raised by os.fsync, as a full disk raises it; a real
    full file system cannot be made portably here): the error names the folder and the
    fix, the partial file is gone, the 9 finished blocks stay, and a rerun resumes."""
    from hcl_sklearn.genetics.gwas import checkpoint

    g = Genotypes.from_plink(str(cohort["prefix"]))
    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 11:                     # run.json, then blocks 1..9, then 10th
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    with pytest.raises(OSError, match="no space left.*resume"):
        CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path, block_size=BLOCK,
                       n_jobs=1).fit(cohort["Y"])
    monkeypatch.setattr(checkpoint.os, "fsync", real)
    blocks = tmp_path / "blocks"
    assert len(list(blocks.glob("*.npz"))) == 9 and not list(blocks.glob("*.tmp"))
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["block_size"] == BLOCK
    resumed = CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path,
                             block_size=BLOCK).fit(cohort["Y"])
    assert resumed.block_store_.n_loaded == 9
    _same_results(cohort["ref"], resumed)


def test_a_damaged_block_file_is_recomputed(cohort, tmp_path):
    g = Genotypes.from_plink(str(cohort["prefix"]))
    CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path, block_size=BLOCK).fit(
        cohort["Y"])
    victim = sorted((tmp_path / "blocks").glob("*.npz"))[3]
    victim.write_bytes(victim.read_bytes()[:100])          # truncated
    again = CrossModalGWAS(g, covariates=cohort["cov"], out_dir=tmp_path,
                           block_size=BLOCK).fit(cohort["Y"])
    assert again.block_store_.n_written == 1
    _same_results(cohort["ref"], again)
