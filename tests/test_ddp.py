"""Data-parallel training under torchrun on CPU (gloo): 2 processes give the loss curve and
weights of 1 process at the same global batch, within float32 roundoff; hcl fit --nproc."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    from hcl_sklearn import MomentumContrastiveEmbedder
    from hcl_sklearn.datasets import make_paired_cohort

    torch.set_num_threads(1)
    b = make_paired_cohort(40, shape=(16, 20, 16), random_state=0)
    model = MomentumContrastiveEmbedder(
        encoder="cnn", cnn_widths=(4, 8), embed_dim=8, proj_dim=8, proj_hidden_dim=16,
        max_epochs=3, batch_size=8, queue_size=16, random_state=0, device="cpu",
        augment="none")
    model.fit(b.X)
    if int(os.environ["RANK"]) == 0:
        torch.save({"state": model.net_.module_.state_dict(),
                    "loss": [float(h["train_loss"]) for h in model.history_]}, sys.argv[1])
""")


def _torchrun(tmp_path, nproc, out):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", str(script), str(out)],
                          capture_output=True, text=True, timeout=600)


def test_two_processes_equal_one_at_the_same_global_batch(tmp_path):
    """36 training subjects, global batch 8 (2 x 4 per rank), 3 epochs, no augmentation
    (each rank would draw its own random numbers). Every weight and buffer is compared.

    The two runs sum float32 gradients in another order; training amplifies that
    roundoff, by an amount that depends on the data and the BLAS kernel. Measured over
    9 cohort seeds (default kernel) and seed 0 under OPENBLAS_CORETYPE=Haswell: the first
    epoch's loss (its first step is taken before any update) within 3.3e-7 relative; the
    later epochs' within 1.2e-6 (default kernel) and 2.2e-5 (Haswell); every tensor within
    5.7e-6. The bounds are ~10x the worst of these. A wrong shard or gradient average
    changes every step by O(lr = 1e-3) and the first epoch's batches, far outside them.
    (Before the biases in front of BatchNorm were frozen, those biases and the running
    means drifted 6e-3 apart: AdamW scales their roundoff-only gradients to full steps.)"""
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    for n, out in ((1, one), (2, two)):
        proc = _torchrun(tmp_path, n, out)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    np.testing.assert_allclose(b["loss"][0], a["loss"][0], rtol=5e-6)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=2e-4)
    for name, x in a["state"].items():
        np.testing.assert_allclose(b["state"][name].double().numpy(), x.double().numpy(),
                                   rtol=0, atol=5e-5, err_msg=name)


def test_sampler_shards_global_batches():
    from hcl_sklearn.embed.nn.distributed import ShardedEpochSampler

    parts = [list(ShardedEpochSampler(37, 8, 5, r, 2)) for r in range(2)]
    whole = list(ShardedEpochSampler(37, 8, 5, 0, 1))
    assert len(whole) == 32 and len(parts[0]) == len(parts[1]) == 16
    # global batch k of one process = rank 0's share then rank 1's
    for k in range(4):
        assert whole[8 * k:8 * k + 8] == parts[0][4 * k:4 * k + 4] + parts[1][4 * k:4 * k + 4]
    s = ShardedEpochSampler(37, 8, 5, 0, 1)
    s.set_epoch(1)
    assert list(s) != whole
    with pytest.raises(ValueError, match="multiple of the 3"):
        ShardedEpochSampler(37, 8, 5, 0, 3)


def test_hcl_fit_nproc_launches_two_processes(tmp_path):
    from hcl_sklearn.app.cli import main

    cohort = tmp_path / "cohort"
    assert main(["simulate", "--out", str(cohort), "--n-subjects", "24", "--shape", "16",
                 "20", "16", "--seed", "1", "--quiet"]) == 0
    out = tmp_path / "model.joblib"
    assert main(["fit", str(cohort), "--out", str(out), "--epochs", "1", "--batch-size",
                 "8", "--target-shape", "16", "20", "16", "--device", "cpu", "--quiet",
                 "--nproc", "2", "--set", "cnn_widths=(4,8)", "--set", "embed_dim=8",
                 "--set", "proj_dim=8", "--set", "queue_size=8"]) == 0
    import joblib

    model = joblib.load(out)
    assert len(model.history_) == 1 and model.n_train_subjects_ > 0
