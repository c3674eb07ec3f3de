"""The GWAS scan and the GRM as tasks on a dask LocalCluster (2 worker processes): equal to
the single-process results; a worker SIGKILLed mid-scan: its tasks retried, nothing lost;
with out_dir, a cluster run resumes a single-process run's blocks."""

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")

from hcl_sklearn import CrossModalGWAS  # noqa: E402
from hcl_sklearn.datasets import make_paired_cohort  # noqa: E402
from hcl_sklearn.genetics import Genotypes, grm  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as lc:
        with distributed.Client(lc) as c:
            yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import write_cohort_bed

    b = make_paired_cohort(400, shape=None, n_causal=5, n_pcs=2, random_state=4)
    prefix = write_cohort_bed(tmp_path_factory.mktemp("dask") / "geno", b)
    F = b.truth.factor_values
    Y = pd.DataFrame({"t1_0": F["shape_1"], "t1_1": F["t1_myelin"], "t2_0": F["shape_2"],
                      "t2_1": F["t2_wmh"]})
    Y.index = Y.index.astype(str)
    Y.iloc[::7, 1] = np.nan                         # a second missingness pattern
    return {"geno": Genotypes.from_plink(str(prefix)), "Y": Y, "cov": b.covariates}


def _equal(a, b):
    # the same per-block code on the same block boundaries: bit-equal in practice; 1e-12
    # relative allows another BLAS kernel on a worker (float64 roundoff of N = 400 sums)
    for x, y in ((a._beta, b._beta), (a._se, b._se), (a._log10_p, b._log10_p),
                 (a._freq, b._freq)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-300)
    assert a.snp_qc_ == b.snp_qc_
    assert {m: v.shape for m, v in a.loci_.items()} == {m: v.shape for m, v in b.loci_.items()}


def test_cluster_gwas_equals_single_process(client, data):
    kw = dict(covariates=data["cov"], block_size=512, n_jobs=1)
    single = CrossModalGWAS(data["geno"], **kw).fit(data["Y"])
    on_cluster = CrossModalGWAS(data["geno"], cluster=client, **kw).fit(data["Y"])
    _equal(single, on_cluster)
    # in-memory genotypes are sent to the workers once
    arr = Genotypes.from_array(data["geno"].read(standardize=False), data["geno"].iid,
                               data["geno"].snps)
    _equal(single, CrossModalGWAS(arr, cluster=client, **kw).fit(data["Y"]))
    # a scheduler address works as well as a Client
    addr = client.scheduler.address
    _equal(single, CrossModalGWAS(data["geno"], cluster=addr, **kw).fit(data["Y"]))


def test_cluster_grm_equals_single_process(client, data):
    from hcl_sklearn.genetics.gwas.distributed import grm_distributed

    K1 = grm(data["geno"])
    K2 = grm(data["geno"], cluster=client)
    # tree of 8 partial sums of ~2000 SNPs each: float64 roundoff of sums of 15.9k terms
    # in another order, ~1e-16 x sqrt(15.9k) x |terms| << 1e-12 of |K|
    Kp, n_used = grm_distributed(data["geno"], None, block_size=256, scale="hwe",
                                 cluster=client, chunk_snps=2000)
    from hcl_sklearn.genetics.grm import _symmetrize_upper_inplace

    Kp = np.asfortranarray(Kp)
    _symmetrize_upper_inplace(Kp)
    np.testing.assert_allclose(Kp / n_used, K1.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K2.to_numpy(), K1.to_numpy(), rtol=0, atol=1e-12)
    assert n_used == K1.attrs["n_snps"] == K2.attrs["n_snps"]


def _scattered_keys(monkeypatch, run):
    """Keys of the futures ``Client.scatter`` returned while ``run()`` ran (the real scatter,
    observed: every client's, including one made from a scheduler address)."""

    keys, scatter = [], distributed.Client.scatter

    def observed(self, data, *args, **kwargs):
        out = scatter(self, data, *args, **kwargs)
        futures = out.values() if isinstance(out, dict) else (
            out if isinstance(out, (list, tuple)) else [out])
        keys.extend(f.key for f in futures)
        return out

    with monkeypatch.context() as m:
        m.setattr(distributed.Client, "scatter", observed)
        run()
    return set(keys)


def test_runs_share_no_scattered_key(client, data, monkeypatch):
    """Every run scatters under keys of its own. A dict scattered as it is goes out value by
    value under its own keys ("geno", "rows", ...), shared by every run on the cluster, so
    that concurrent runs read each other's data; a content-hashed key is shared by two runs
    of the same data, and one run's release of it can strand the other's tasks
    (dask/distributed#8576)."""
    arr = Genotypes.from_array(data["geno"].read(standardize=False), data["geno"].iid,
                               data["geno"].snps)
    kw = dict(covariates=data["cov"], block_size=512, n_jobs=1)
    addr = client.scheduler.address
    runs = [_scattered_keys(monkeypatch, lambda: CrossModalGWAS(g, cluster=c, **kw)
                            .fit(data["Y"]))
            for g in (data["geno"], arr) for c in (client, client, addr)]
    runs += [_scattered_keys(monkeypatch, lambda: grm(arr, cluster=client)) for _ in range(2)]
    assert all(len(keys) == 1 for keys in runs), runs     # one scattered object per run
    assert len(set().union(*runs)) == len(runs), runs


def test_concurrent_runs_on_one_cluster_keep_their_data(client, data):
    """Two fits of different phenotypes and genotypes at once on one cluster each equal
    their single-process result."""
    arr = Genotypes.from_array(data["geno"].read(standardize=False)[:, ::-1].copy(),
                               data["geno"].iid, data["geno"].snps.iloc[::-1])
    Y2 = data["Y"].iloc[:, ::-1].set_axis(data["Y"].columns, axis=1)
    jobs = [(data["geno"], data["Y"]), (arr, Y2)]
    kw = dict(covariates=data["cov"], block_size=256, n_jobs=1)
    single = [CrossModalGWAS(g, **kw).fit(y) for g, y in jobs]
    out = [None, None]

    def fit(i):
        out[i] = CrossModalGWAS(jobs[i][0], cluster=client, **kw).fit(jobs[i][1])

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a cluster run did not finish"
    for ref, got in zip(single, out):
        _equal(ref, got)


@pytest.fixture
def own_client():
    """A cluster of its own for the test that kills a worker (no other test shares it)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=50) as lc:
        with distributed.Client(lc) as c:
            yield c


def test_a_worker_killed_mid_scan_loses_nothing(own_client, data):
    """One worker process is SIGKILLed while the scan's 250 tasks run: the nanny restarts
    it, the scheduler retries its tasks, and the results equal the single-process run."""
    client = own_client
    kw = dict(covariates=data["cov"], block_size=64, n_jobs=1)
    single = CrossModalGWAS(data["geno"], **kw).fit(data["Y"])
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    seen = {}

    def kill_when_running():
        deadline = time.time() + 60
        while time.time() < deadline:          # wait until tasks are on the workers
            if any(client.processing().values()):
                time.sleep(0.05)
                os.kill(victim, signal.SIGKILL)
                seen["killed"] = time.time()
                return
            time.sleep(0.005)

    th = threading.Thread(target=kill_when_running)
    th.start()
    t0 = time.time()
    result = CrossModalGWAS(data["geno"], cluster=client, **kw).fit(data["Y"])
    th.join()
    assert "killed" in seen and seen["killed"] < time.time()
    assert seen["killed"] > t0
    _equal(single, result)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()   # it was replaced


def test_cluster_run_resumes_single_process_blocks(client, data, tmp_path):
    kw = dict(covariates=data["cov"], block_size=1024, out_dir=tmp_path)
    first = CrossModalGWAS(data["geno"], **kw).fit(data["Y"])
    blocks = sorted((tmp_path / "blocks").glob("*.npz"))
    for f in blocks[::2]:
        f.unlink()                                   # half of them "lost"
    again = CrossModalGWAS(data["geno"], cluster=client, **kw).fit(data["Y"])
    assert again.block_store_.n_loaded == len(blocks) - len(blocks[::2])
    assert again.block_store_.n_written == len(blocks[::2])
    _equal(first, again)


def test_bad_cluster_argument(data):
    with pytest.raises(TypeError, match="cluster must be"):
        CrossModalGWAS(data["geno"], cluster=42).fit(data["Y"])


def test_cluster_mixed_model_equals_single_process(client):
    """The LOCO mixed model (related subjects, 2 pseudo-chromosomes): each chromosome's
    rotated kernels go to the workers, blocks run as tasks, results equal."""
    b = make_paired_cohort(300, shape=None, n_causal=5, n_pcs=0, n_chromosomes=2,
                           related_fraction=0.5, polygenic_h2=0.3, random_state=0)
    geno = Genotypes.from_array(b.genotypes, list(b.subject_ids), b.snps)
    F = b.truth.factor_values
    Y = pd.DataFrame({"t1_a": F["shape_1"], "t2_b": F["shape_2"], "t1_c": F["t1_myelin"],
                      "t2_d": F["t2_wmh"]})
    kw = dict(model="lmm", covariates=b.covariates, block_size=1024, n_jobs=1)
    _equal(CrossModalGWAS(geno, **kw).fit(Y), CrossModalGWAS(geno, cluster=client, **kw).fit(Y))


def test_heritability_entry_points_build_their_grm_on_the_cluster(client, data):
    """HeritabilityScorer and genetic_correlation with genotypes= and cluster=: the GRM is
    built on the cluster, and the estimates equal those from the single-process GRM."""
    from hcl_sklearn import HeritabilityScorer, genetic_correlation

    Y = data["Y"].dropna()
    kw = dict(genotypes=data["geno"], method="he", random_state=0)
    single = HeritabilityScorer(**kw).fit(Y).results_
    cluster = HeritabilityScorer(cluster=client, **kw).fit(Y).results_
    # GRM equal to 1e-12 (one chunk per task here: equal bit for bit), HE is a closed form
    pd.testing.assert_frame_equal(single, cluster, rtol=1e-10)
    rg1 = genetic_correlation(Y[["t1_0"]], Y[["t2_0"]], genotypes=data["geno"])
    rg2 = genetic_correlation(Y[["t1_0"]], Y[["t2_0"]], genotypes=data["geno"],
                              cluster=client)
    pd.testing.assert_frame_equal(rg1, rg2, rtol=1e-10)
