"""MomentumContrastiveEmbedder(checkpoint_dir=...): a training run SIGKILLed mid-epoch and
started again ends with the weights and loss curve of an uninterrupted run (CPU, fixed
seed); a checkpoint of another configuration is refused."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, torch
    from skorch.callbacks import Callback
    from hcl_sklearn import MomentumContrastiveEmbedder
    from hcl_sklearn.datasets import make_paired_cohort

    torch.set_num_threads(1)
    ckpt, kill_at, out, epochs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    class KillAt(Callback):
        # SIGKILL at the kill_at-th batch (training and validation batches counted):
        # no clean-up of any kind runs
        def initialize(self):
            self.n = 0
            return self
        def on_batch_end(self, net, **kwargs):
            self.n += 1
            if self.n == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    b = make_paired_cohort(40, shape=(16, 20, 16), random_state=0)
    model = MomentumContrastiveEmbedder(
        encoder="cnn", cnn_widths=(4, 8), embed_dim=8, proj_dim=8, proj_hidden_dim=16,
        max_epochs=epochs, batch_size=8, queue_size=16, random_state=0, device="cpu",
        momentum_schedule="cosine", warmup_epochs=1.5,
        checkpoint_dir=None if ckpt == "none" else ckpt,
        callbacks=[("kill", KillAt())] if kill_at > 0 else None)
    model.fit(b.X)
    sd = model.net_.module_.state_dict()
    np.savez(out, weights=np.concatenate([v.double().ravel().numpy() for v in sd.values()]),
             loss=np.array([h["train_loss"] for h in model.history_]),
             resumed=getattr(model, "resumed_from_epoch_", -1))
""")


def _run(tmp_path, ckpt, kill_at, out, epochs=4):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    return subprocess.run([sys.executable, str(script), str(ckpt), str(kill_at), str(out),
                           str(epochs)], capture_output=True, text=True, timeout=600)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    """36 training subjects, batches of 8: 5 training + 1 validation batch per epoch.
    Killed at batch 11 (inside epoch 2) and at a random batch of epochs 2-4; each rerun
    resumes after the last complete epoch and ends bit-identical to the uninterrupted run
    (same CPU kernels and threads; the default cosine LR schedule, the validation split,
    the best-epoch restore and the intensity augmentation all in play, and the per-step
    momentum schedule and lr warm-up, which must pick up at the right step)."""
    ref = _run(tmp_path, "none", 0, tmp_path / "ref.npz")
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref = np.load(tmp_path / "ref.npz")
    kill_points = [11, int(np.random.default_rng().integers(7, 24))]
    for k, kill_at in enumerate(kill_points):
        ckpt = tmp_path / f"ckpt{k}"
        killed = _run(tmp_path, ckpt, kill_at, tmp_path / f"killed{k}.npz")
        assert killed.returncode == -9, (kill_at, killed.stderr[-2000:])   # SIGKILL
        assert (ckpt / "checkpoint.pt").exists() and not list(ckpt.glob("*.tmp"))
        again = _run(tmp_path, ckpt, 0, tmp_path / f"again{k}.npz")
        assert again.returncode == 0, again.stderr[-2000:]
        got = np.load(tmp_path / f"again{k}.npz")
        assert int(got["resumed"]) == (kill_at - 1) // 6         # complete epochs before
        np.testing.assert_array_equal(got["weights"], ref["weights"])
        np.testing.assert_array_equal(got["loss"], ref["loss"])


def test_checkpoint_of_another_run_is_refused(tmp_path):
    from hcl_sklearn import MomentumContrastiveEmbedder
    from hcl_sklearn.datasets import make_paired_cohort

    b = make_paired_cohort(20, shape=(16, 20, 16), random_state=0)
    kw = dict(encoder="cnn", cnn_widths=(4, 8), embed_dim=8, proj_dim=8, proj_hidden_dim=16,
              max_epochs=1, batch_size=8, queue_size=8, random_state=0, device="cpu",
              checkpoint_dir=tmp_path)
    MomentumContrastiveEmbedder(**kw).fit(b.X)
    with pytest.raises(ValueError, match=r"different training run \(params \['lr'\]"):
        MomentumContrastiveEmbedder(**{**kw, "lr": 1e-2}).fit(b.X)
    with pytest.raises(ValueError, match="train_ids"):
        MomentumContrastiveEmbedder(**kw).fit(b.X[:19])
    # the same run again: training was complete, the saved weights are used as they are
    done = MomentumContrastiveEmbedder(**kw).fit(b.X)
    assert done.resumed_from_epoch_ == 1
    # and max_epochs may grow: one more epoch on top of the saved one
    more = MomentumContrastiveEmbedder(**{**kw, "max_epochs": 2}).fit(b.X)
    assert more.resumed_from_epoch_ == 1 and len(more.history_) == 2
