"""MomentumContrastiveEmbedder: fitting, transform forms, persistence, resume, guards."""

import math
import pickle
import warnings

import joblib
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from skorch.callbacks import Callback, Checkpoint, LoadInitState

from hcl_sklearn import MomentumContrastiveEmbedder, PairedVolumes
from hcl_sklearn.embed.callbacks import NonFiniteLossError
from hcl_sklearn.embed.contrastive import effective_queue_size
from hcl_sklearn.evaluation.metrics import linear_cka, retrieval_scores
from hcl_sklearn.embed.nn.moco import in_batch_info_nce

# the FAST configurations are tiny on purpose (a few steps, a queue the data cannot fill)
pytestmark = pytest.mark.filterwarnings(
    "ignore::hcl_sklearn.embed.contrastive.ConfigurationWarning")

U32 = 2.0 ** -24   # float32 unit roundoff


def float32_mean_bound(x, axis):
    """Largest difference between two float32 means of ``x`` over ``axis`` taken in any
    summation order: each is within ``gamma_n mean|x|`` of the exact mean, with
    ``gamma_n = n u / (1 - n u)`` (Higham, Accuracy and Stability of Numerical
    Algorithms, Lemma 3.1), plus one rounding of the result (u |mean|)."""
    n = np.prod([x.shape[a] for a in np.atleast_1d(axis)])
    gamma = (n + 1) * U32 / (1 - (n + 1) * U32)
    return 2 * gamma * np.abs(x).mean(axis=axis)


# tiny and mean-pooled (the shapes below are those of the reference's pooling)
FAST = dict(encoder="cnn", embed_dim=8, cnn_widths=(4,), proj_dim=8, batch_size=4,
            pooling="mean", proj_hidden_dim=None, max_epochs=1, validation_fraction=0.25,
            random_state=0)


@pytest.fixture(scope="module")
def volumes():
    """16 subjects, 8^3 voxels: a shared random anatomy seen with two contrasts."""
    rng = np.random.default_rng(0)
    anatomy = rng.random((16, 8, 8, 8)).astype(np.float32) + 0.1
    t1 = anatomy + 0.05 * rng.random(anatomy.shape, dtype=np.float32)
    t2 = 1.5 - anatomy + 0.05 * rng.random(anatomy.shape, dtype=np.float32)
    return np.stack([t1, t2], axis=1)


def test_fit_transform_shapes_names_and_outputs(volumes, tmp_path):
    emb = MomentumContrastiveEmbedder(**FAST).fit(volumes)
    assert emb.volume_shape_ == (8, 8, 8)
    assert emb.n_train_subjects_ == 12 and len(emb.validation_ids_) == 4
    Z = emb.transform(volumes)
    assert isinstance(Z, np.ndarray) and Z.shape == (16, 16) and Z.dtype == np.float32
    names = emb.get_feature_names_out()
    assert list(names[:2]) == ["t1_000", "t1_001"] and names[8] == "t2_000"

    emb.set_params(output="tokens", temp_folder=str(tmp_path))
    T = emb.transform(volumes)
    assert isinstance(T, np.memmap) and str(tmp_path) in T.filename
    n_tok = emb.net_.module_.n_tokens
    assert T.shape == (16, 2 * n_tok * 8)
    # pooled output = mean of the streamed tokens, per modality
    tok = np.asarray(T).reshape(16, 2, n_tok, 8)
    bound = float32_mean_bound(tok, axis=2).reshape(16, 16)
    assert (np.abs(tok.mean(axis=2).reshape(16, 16) - Z) <= bound).all()

    emb.set_params(output="projection")
    P = emb.transform(volumes)
    # x / |x| in float32 and numpy's float32 norm of it: each norm of 8 terms within
    # (8 / 2 + 2) u relative, the division u: |1 - norm| <= 13 u = 7.7e-7
    np.testing.assert_allclose(np.linalg.norm(P[:, :8], axis=1), 1.0, rtol=13 * U32)


def test_pandas_output_and_subject_ids(volumes):
    ids = [f"sub-{i:02d}" for i in range(16)]
    emb = MomentumContrastiveEmbedder(**FAST).fit(volumes)
    df = emb.transform(PairedVolumes(volumes, target_shape=None, subject_ids=ids))
    assert list(df.index) == ids and df.columns[0] == "t1_000"
    np.testing.assert_array_equal(df.to_numpy(), emb.transform(volumes))
    emb.set_output(transform="pandas")
    out = emb.transform(volumes)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(emb.get_feature_names_out())


def test_nifti_frame_input_keeps_subject_ids(tmp_path, volumes):
    rows = {}
    for i in range(8):
        sid = f"s{i}"
        paths = []
        for c, m in enumerate(("t1", "t2")):
            p = tmp_path / f"{sid}_{m}.nii.gz"
            nib.save(nib.Nifti1Image(volumes[i, c], np.eye(4)), str(p))
            paths.append(str(p))
        rows[sid] = paths
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["t1", "t2"])
    emb = MomentumContrastiveEmbedder(**{**FAST, "target_shape": (8, 8, 8)}).fit(frame)
    out = emb.transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.index) == list(frame.index)
    assert set(emb.validation_ids_) <= set(frame.index)


def test_same_random_state_gives_identical_embeddings(volumes):
    a = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2}).fit(volumes).transform(volumes)
    b = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2}).fit(volumes).transform(volumes)
    np.testing.assert_array_equal(a, b)
    c = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2, "random_state": 1}
                                    ).fit(volumes).transform(volumes)
    assert not np.allclose(a, c)


def test_pickle_and_joblib_round_trip(volumes, tmp_path):
    emb = MomentumContrastiveEmbedder(**FAST).fit(volumes)
    Z = emb.transform(volumes)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(emb)).transform(volumes), Z)
    joblib.dump(emb, tmp_path / "emb.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "emb.joblib").transform(volumes), Z)
    # the fitted estimator does not carry the training volumes
    assert emb.net_.train_split is None and b"PairedVolumes" not in pickle.dumps(emb)


def test_resume_from_skorch_checkpoint(volumes, tmp_path):
    cp = Checkpoint(dirname=str(tmp_path), monitor=None)
    first = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2, "validation_fraction": None,
                                           "callbacks": [cp]}).fit(volumes)
    Z = first.transform(volumes)
    # resume with no new epoch: exactly the checkpointed model (weights, EMA keys, queue)
    resumed = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 0, "validation_fraction": None,
                                             "callbacks": [LoadInitState(cp)]}).fit(volumes)
    np.testing.assert_array_equal(resumed.transform(volumes), Z)
    for name, t in first.net_.module_.state_dict().items():
        torch.testing.assert_close(resumed.net_.module_.state_dict()[name], t)
    # resume and train on: the history continues at epoch 3
    more = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 1, "validation_fraction": None,
                                          "callbacks": [LoadInitState(cp)]}).fit(volumes)
    assert list(more.history_[:, "epoch"]) == [1, 2, 3]
    assert not np.allclose(more.transform(volumes), Z)


def test_best_validation_epoch_is_restored_and_metrics_logged(volumes):
    emb = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 4, "lr": 3e-3}).fit(volumes)
    losses = emb.history_[:, "valid_loss"]
    assert emb.best_epoch_ == int(np.argmin(losses)) + 1
    # recompute the in-batch validation loss and alignment with the restored weights
    valid = np.sort(emb.validation_ids_.to_numpy().astype(int))
    emb.set_params(output="projection")
    P = emb.transform(volumes[valid]).reshape(len(valid), 2, 8)
    pt = torch.from_numpy(P)
    batches = [pt[i:i + 4] for i in range(0, len(valid), 4)]
    loss = sum(len(b) * float(in_batch_info_nce(b[:, 0], b[:, 1], emb.temperature)) for b in batches)
    row = emb.history_[emb.best_epoch_ - 1]
    # the logged figures came from the same weights in float32 but other batch shapes
    # (oneDNN picks its convolution by shape): projections agree to ~10 u ~ 1e-6; the
    # logits q.k / tau multiply that by 1 / tau <= 14, so the loss (~ln 4) and the CKA
    # agree to ~1e-5 relative; 1e-4 leaves a 10x margin
    assert loss / len(valid) == pytest.approx(row["valid_loss"], rel=1e-4)
    # a fraction of 4 queries: equal unless a near-tie of similarities flips (none here)
    assert row["valid_top1"] == retrieval_scores(P[:, 0], P[:, 1])["top1"]
    assert row["valid_cka"] == pytest.approx(linear_cka(P[:, 0], P[:, 1]), rel=1e-4)
    for key in ("valid_recall@5", "valid_median_rank", "event_lr"):
        assert key in row


def test_lr_follows_cosine_warm_restarts(volumes):
    emb = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 3, "lr": 1e-2}).fit(volumes)
    lrs = emb.history_[:, "event_lr"]
    ref = [1e-6 + (1e-2 - 1e-6) * (1 + np.cos(np.pi * e / 10)) / 2 for e in range(3)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)  # float64 closed form both sides


class _RateSpy(Callback):
    """Momentum and learning rate in force at each training step (read at batch end,
    before the schedules' own on_batch_end, as user callbacks come first)."""

    def initialize(self):
        self.momentum, self.lr = [], []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.momentum.append(net.module_.momentum)
            self.lr.append(net.optimizer_.param_groups[0]["lr"])


def test_momentum_schedule_and_warmup_follow_their_closed_forms(volumes):
    """12 training subjects in batches of 4 for 3 epochs: 9 steps. Momentum
    1 - (1 - m0)(cos(pi k / 9) + 1) / 2 (BYOL / MoCo v3), lr ramped by (k + 1) / 3 over
    the first epoch's 3 steps; both restored when training ends, and the epoch schedule
    underneath (cosine warm restarts) untouched. float64 closed forms on both sides."""
    params = {**FAST, "max_epochs": 3, "lr": 1e-2, "momentum": 0.5,
              "momentum_schedule": "cosine", "warmup_epochs": 1}
    for schedule in ("constant", "cosine_warm_restarts"):
        spy = _RateSpy()
        emb = MomentumContrastiveEmbedder(**params, lr_schedule=schedule,
                                          callbacks=[("spy", spy)]).fit(volumes)
        spy = dict(emb.net_.callbacks_)["spy"]
        k = np.arange(9)
        np.testing.assert_allclose(spy.momentum, 1 - 0.5 * (np.cos(np.pi * k / 9) + 1) / 2,
                                   rtol=1e-12)
        epoch_lr = (np.full(3, 1e-2) if schedule == "constant" else
                    1e-6 + (1e-2 - 1e-6) * (1 + np.cos(np.pi * np.arange(3) / 10)) / 2)
        if schedule != "constant":  # the epoch schedule's own record
            np.testing.assert_allclose(emb.history_[:, "event_lr"], epoch_lr, rtol=1e-12)
        np.testing.assert_allclose(spy.lr, np.repeat(epoch_lr, 3) * np.minimum(1, (k + 1) / 3),
                                   rtol=1e-12)
        assert emb.net_.module_.momentum == 0.5
        # the rate left is the epoch schedule's, stepped after the last epoch
        last = 1e-2 if schedule == "constant" else (
            1e-6 + (1e-2 - 1e-6) * (1 + np.cos(np.pi * 3 / 10)) / 2)
        assert emb.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(last, rel=1e-12)


def test_only_query_weights_are_optimised(volumes):
    emb = MomentumContrastiveEmbedder(**FAST).fit(volumes)
    module = emb.net_.module_
    optimised = {id(p) for g in emb.net_.optimizer_.param_groups for p in g["params"]}
    # the query weights, less the biases in front of BatchNorm (frozen: their gradient is
    # roundoff only, see MomentumContrast._gauge_biases)
    gauge = {id(p) for p in module._gauge_biases()}
    assert gauge and all(not p.requires_grad for p in module._gauge_biases())
    assert optimised == {id(p) for p in module.query_parameters()} - gauge


@pytest.mark.parametrize("extra", [
    {"queue_modalities": "both"},
    {"shared_encoder": False},
    {"batch_size": 1},
    {"batch_size": 2, "validation_fraction": None},
    {"encoder": "vit", "patch_size": (3, 3, 3), "embed_dim": 12, "depth": 1, "n_heads": 2},
    {"lr_schedule": "constant", "precision": "bf16"},
    {"pooling": (2, 2, 2), "proj_hidden_dim": 6, "projector_batchnorm": "per_modality"},
])
def test_variants_train(volumes, extra):
    emb = MomentumContrastiveEmbedder(**{**FAST, **extra}).fit(volumes)
    Z = emb.transform(volumes)
    assert np.isfinite(Z).all() and np.isfinite(emb.history_[-1, "train_loss"])


def test_queue_is_clipped_to_the_data():
    assert effective_queue_size(65536, 12, 4) == 8
    assert effective_queue_size(65536, 13, 4) == 8
    assert effective_queue_size(65536, 100, 8) == 88
    assert effective_queue_size(10, 100, 8) == 10
    assert effective_queue_size(65536, 3, 4) == 3


class _RecordExclusions(Callback):
    """Per training batch: the batch's subject indices and how many queued keys of them
    the loss leaves out."""

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            ids = torch.as_tensor(batch[1])
            self.seen_ = getattr(self, "seen_", []) + [
                (ids.tolist(), int(net.module_.false_negatives(ids).sum()))]


def test_fit_leaves_each_subjects_stale_keys_out(volumes):
    """With a queue as long as the other training subjects and shuffled epochs, from the
    second epoch on the queue holds stale keys of the batch's own subjects: the loss must
    see them as excluded, and the queue must record only training-subject indices."""
    emb = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 3, "validation_fraction": None},
                                      callbacks=[("rec", _RecordExclusions())])
    emb.fit(volumes)
    n = len(volumes)
    ids = emb.net_.module_.queue_ids
    assert ((ids >= 0) & (ids < n)).all()  # filled in epoch 1, with subject indices only
    assert len(set(ids.tolist())) == len(ids)  # one key per subject (queue <= n - batch)
    first_epoch = math.ceil(n / FAST["batch_size"])
    seen = dict(emb.net_.callbacks_)["rec"].seen_  # the net's copy of the callback
    assert sum(k for _, k in seen[first_epoch:]) > 0


class _PoisonWeights(Callback):
    """Fault injection: set one weight to NaN before a chosen training batch."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, net, **kwargs):
        self.seen_ = 0

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self.seen_ += 1
            if len(net.history) == self.epoch and self.seen_ == self.batch:
                with torch.no_grad():
                    next(net.module_.projector_q.parameters()).fill_(float("nan"))


def test_non_finite_loss_names_epoch_and_batch(volumes):
    emb = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 3,
                                         "callbacks": [_PoisonWeights(2, 2)]})
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, training batch 2"):
        emb.fit(volumes)


@pytest.mark.parametrize("params, X_shape, match", [
    ({}, (6, 12, 12, 12), "wrong array rank"),
    ({"validation_fraction": 0.05}, None, "validation_fraction"),
    ({"encoder": "vit", "patch_size": (14, 16, 14)}, None, "larger than the volume"),
    ({"encoder": "vit", "patch_size": (4, 4, 4), "embed_dim": 10, "n_heads": 3}, None,
     "divisible by n_heads"),
    ({"temperature": 0.0}, None, "temperature"),
    ({"queue_modalities": "t1"}, None, "queue_modalities"),
    ({"precision": "fp8"}, None, "precision"),
])
def test_bad_input_raises_value_error(volumes, params, X_shape, match):
    X = volumes if X_shape is None else np.zeros(X_shape, dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        MomentumContrastiveEmbedder(**{**FAST, **params}).fit(X)


def test_bad_input_types_and_state(volumes):
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="sparse input is not supported"):
        MomentumContrastiveEmbedder(**FAST).fit(sp.csr_matrix(np.eye(4)))
    with pytest.raises(NotFittedError):
        MomentumContrastiveEmbedder(**FAST).transform(volumes)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            MomentumContrastiveEmbedder(**{**FAST, "device": "cuda"}).fit(volumes)
    emb = MomentumContrastiveEmbedder(**FAST).fit(volumes)
    with pytest.raises(ValueError, match=r"fitted on \(8, 8, 8\)"):
        emb.transform(volumes[:, :, :6])



def test_it_learns_shared_anatomy():
    """A short CPU training aligns T1 and T2 and beats the random-init encoder.

    Synthetic pairs: a sphere of random radius and centre, bright in T1 and dark in T2
    (inverted contrast, independent noise); 40 subjects train, 20 are held out (40
    retrieval queries, both directions). Averaged over three training seeds, held-out
    retrieval must be far above chance and better than the untrained encoder's (same
    seeds). The simulator version is ``test_it_learns_on_the_simulated_cohort``.

    Measured spread (estimator seeds 0-11; OpenBLAS/torch kernels SkylakeX/avx512 and
    Sandybridge/default with 1 thread, Haswell/avx2 with 2), one seed at a time:
    top-1 0.15-0.35 (random init 0.00-0.175; seed 5 ties its init), mean rank 4.4-6.6
    (init 8.3-11.5; chance 10.5), recall@5 0.50-0.80 (init 0.15-0.40). A single seed's
    top-1 (40 queries: 0.025 steps) sits at 3x chance for seed 0, so the assertions are
    on the mean over seeds 0-2: top-1 0.21-0.24 (worst triple of the 12 seeds 0.17),
    mean rank 5.0-5.1 (worst triple 6.2), gain in mean rank over init 4.8 (worst triple
    2.8), gain in recall@5 0.37-0.40 (worst triple 0.22). Null references: top-1 of 120
    queries has chance 0.05 +- 0.02 (binomial SE), the mean rank 10.5 +- ~0.5.
    (Prediction of the radius is not asserted: with per-modality BatchNorm batches it
    stays at the random-init level, r 0.61.)
    """
    rng = np.random.default_rng(0)
    n, s = 60, 10
    grid = np.stack(np.meshgrid(*[np.arange(s)] * 3, indexing="ij"))
    radius = rng.uniform(1.5, 4.0, n)
    centre = rng.uniform(3.5, 6.5, (n, 3))
    X = np.empty((n, 2, s, s, s), dtype=np.float32)
    for i in range(n):
        inside = ((grid - centre[i][:, None, None, None]) ** 2).sum(0) < radius[i] ** 2
        X[i, 0] = 0.2 + 0.05 * rng.random((s, s, s)) + 0.8 * inside
        X[i, 1] = 0.2 + 0.05 * rng.random((s, s, s)) + 0.8 * ~inside
    tr, te = np.arange(40), np.arange(40, 60)
    params = dict(encoder="cnn", embed_dim=16, cnn_widths=(8, 16), proj_dim=16, batch_size=8,
                  lr=1e-3, temperature=0.2, momentum=0.9, queue_modalities="both",
                  projector_batchnorm="per_modality", validation_fraction=None,
                  pooling="mean", proj_hidden_dim=None, augment="none",
                  lr_schedule="cosine_warm_restarts")

    def retrieval(epochs, seed):
        emb = MomentumContrastiveEmbedder(**params, max_epochs=epochs, random_state=seed)
        Z = emb.fit(X[tr]).set_params(output="projection").transform(X)
        return retrieval_scores(Z[te, :16], Z[te, 16:], ks=(1, 5))

    seeds = (0, 1, 2)
    runs = [(retrieval(15, s), retrieval(0, s)) for s in seeds]

    def mean(key, which):
        return float(np.mean([r[which][key] for r in runs]))

    chance = runs[0][0]["chance_top1"]
    print(f"over seeds {seeds}: top1 {mean('top1', 0):.3f} (random init {mean('top1', 1):.3f}, "
          f"chance {chance:.3f}); mean rank {mean('mean_rank', 0):.2f} "
          f"({mean('mean_rank', 1):.2f}, chance {(len(te) + 1) / 2}); recall@5 "
          f"{mean('recall@5', 0):.3f} ({mean('recall@5', 1):.3f})")
    assert mean("top1", 0) >= 2.5 * chance                   # 3.7 binomial SE above chance
    assert mean("mean_rank", 0) <= 0.7 * (len(te) + 1) / 2   # 7.35; measured <= 6.2
    assert mean("mean_rank", 1) - mean("mean_rank", 0) >= 2.0
    assert mean("recall@5", 0) >= mean("recall@5", 1) + 0.15


def test_grid_pooling_keeps_spatial_layout(volumes, tmp_path):
    """pooling=(2, 2, 2): pooled output = per-cell means of the token grid, flattened."""
    emb = MomentumContrastiveEmbedder(**{**FAST, "pooling": (2, 2, 2)}).fit(volumes)
    module = emb.net_.module_
    assert module.pooled_dim == 8 * 8
    Z = emb.transform(volumes)
    assert Z.shape == (16, 2 * 64) and emb.get_feature_names_out()[64] == "t2_000"
    emb.set_params(output="tokens", temp_folder=str(tmp_path))   # no file left behind
    tok = np.asarray(emb.transform(volumes)).reshape(16, 2, *module.grid, 8)
    gd, gh, gw = (g // 2 for g in module.grid)  # grid is even here: exact 2x2x2 cells
    cells = tok.reshape(16, 2, 2, gd, 2, gh, 2, gw, 8).mean(axis=(3, 5, 7))
    expected = np.moveaxis(cells, -1, 2).reshape(16, 2 * 64)  # channel-major, as torch
    bound = float32_mean_bound(tok.reshape(16, 2, 2, gd, 2, gh, 2, gw, 8), axis=(3, 5, 7))
    assert (np.abs(expected - Z) <= np.moveaxis(bound, -1, 2).reshape(16, 2 * 64)).all()


@pytest.mark.parametrize("pooling", ["max", (2, 2), (2, 0, 2)])
def test_bad_pooling_is_rejected(volumes, pooling):
    with pytest.raises(ValueError, match="pooling"):
        MomentumContrastiveEmbedder(**{**FAST, "pooling": pooling}).fit(volumes)


@pytest.mark.slow
def test_it_learns_on_the_simulated_cohort():
    """On make_paired_cohort, a short CPU training (10 epochs, 35-60 s on 2 cores) gives
    held-out cross-modal retrieval far above chance and far better than the same
    pipeline with the random-init encoder, and keeps the encoder's age information.

    1000 subjects at 24x28x24, z-scored as in the reference; 800 train, 200 held out
    (400 queries; chance top-1 0.005, chance median and mean rank 100.5; the null mean
    rank has SE ~2.9). Measured spread (estimator seeds 0-4, kernels SkylakeX/avx512
    and Sandybridge/default, 1 thread): mean rank 40-63 (random init 98-102), median
    rank 29-53 (96-105), recall@10 0.09-0.22 (0.045-0.062; ratio >= 2.0), top-1
    0.007-0.040, age r 0.64-0.76 (init 0.60-0.74; trained minus init -0.05 to +0.11).
    So the test asserts the rank statistics, each cleared by the worst run with a clear
    margin; top-1 (3 hits of 400 in the worst run) and the age gain over random init are
    not robust at this recipe and are not asserted as learning claims: age r is only
    required to stay within 0.1 (~3 SE of the difference of two r at n = 200) of init.
    """
    from scipy.stats import pearsonr
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hcl_sklearn.datasets import make_paired_cohort

    b = make_paired_cohort(1000, (24, 28, 24), random_state=0)
    X, age = np.asarray(b.X, np.float32), np.asarray(b.age, float)
    tr, te = np.arange(800), np.arange(800, 1000)
    params = dict(encoder="cnn", embed_dim=16, cnn_widths=(8, 16), proj_dim=32,
                  pooling=(2, 2, 2), projector_batchnorm="per_modality",
                  batch_size=16, lr=1e-3, temperature=0.2,
                  lr_schedule="constant", momentum=0.9, queue_modalities="both",
                  proj_hidden_dim=None, augment="none", validation_fraction=None,
                  random_state=0)

    def scores(epochs):
        emb = MomentumContrastiveEmbedder(max_epochs=epochs, **params).fit(X[tr])
        Z = emb.set_params(output="projection").transform(X[te])
        retrieval = retrieval_scores(Z[:, :32], Z[:, 32:], ks=(1, 5, 10))
        P = emb.set_params(output="pooled").transform(X)
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
        r = pearsonr(ridge.fit(P[tr], age[tr]).predict(P[te]), age[te])[0]
        return retrieval, r

    (ret, r), (ret0, r0) = scores(10), scores(0)
    print(f"top1 {ret['top1']:.3f} (random init {ret0['top1']:.3f}, chance "
          f"{ret['chance_top1']:.3f}); recall@5 {ret['recall@5']:.3f} ({ret0['recall@5']:.3f});"
          f" recall@10 {ret['recall@10']:.3f} ({ret0['recall@10']:.3f}); median rank "
          f"{ret['median_rank']:.1f} ({ret0['median_rank']:.1f}); mean rank {ret['mean_rank']:.1f} "
          f"({ret0['mean_rank']:.1f}); age r {r:.3f} ({r0:.3f})")
    chance_rank = (len(te) + 1) / 2
    assert ret["mean_rank"] <= 0.75 * chance_rank               # 75; measured <= 63
    assert ret0["mean_rank"] - ret["mean_rank"] >= 25            # measured >= 36
    assert ret["median_rank"] < 0.6 * chance_rank               # 60; measured <= 53
    assert ret["recall@10"] >= 1.5 * ret0["recall@10"]          # measured ratio >= 2.0
    assert r > r0 - 0.1


class _GradNorms(Callback):
    """Records the total gradient norm that ``on_grad_computed`` callbacks see."""

    def __init__(self, init_scale=None):
        self.init_scale = init_scale

    def on_train_begin(self, net, **kwargs):
        self.norms_, self.scales_ = [], []
        if self.init_scale is not None and net.grad_scaler_ is not None:
            # a 2**16 start overflows this toy model's fp16 backward for ~10 steps
            # (each then skipped, halving the scale); start where it does not
            net.grad_scaler_ = torch.amp.GradScaler("cpu", init_scale=self.init_scale)

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad.detach().float().norm() for _, p in named_parameters
                 if p.grad is not None]
        self.norms_.append(float(torch.stack(grads).norm()))
        scaler = getattr(net, "grad_scaler_", None)
        self.scales_.append(1.0 if scaler is None else float(scaler.get_scale()))


def test_fp16_callbacks_see_unscaled_gradients(volumes):
    """Under fp16 the loss is scaled (GradScaler) before backward; callbacks such as
    gradient clipping must see the unscaled gradients. The first step's gradient norm
    under fp16 (scale 16) equals the fp32 one to fp16 precision (same weights and batch;
    fp16 products round to ~1e-3 relative, 0.2 allows for that through the network),
    whereas scaled gradients would be 16x larger (measured: 1083 vs 67 without the
    unscale). Clipping under fp16 then trains with finite losses."""
    from skorch.callbacks import GradientNormClipping

    first = {}
    for precision in ("fp32", "fp16"):
        emb = MomentumContrastiveEmbedder(**{**FAST, "precision": precision,
                                             "callbacks": [_GradNorms(2.0 ** 4)]}).fit(volumes)
        assert (emb.net_.grad_scaler_ is not None) == (precision == "fp16")
        rec = next(cb for _, cb in emb.net_.callbacks_ if isinstance(cb, _GradNorms))
        first[precision] = rec.norms_[0]
    assert first["fp16"] == pytest.approx(first["fp32"], rel=0.2), first
    clip = GradientNormClipping(gradient_clip_value=1e-3)
    emb = MomentumContrastiveEmbedder(**{**FAST, "precision": "fp16", "max_epochs": 2,
                                         "callbacks": [clip]}).fit(volumes)
    assert np.isfinite(emb.history_[:, "train_loss"]).all()


def test_configurations_that_cannot_learn_warn(volumes):
    """12 training subjects, batch 4, 2 epochs = 6 steps: momentum 0.999 keeps
    0.999**6 = 99% of the random key weights, and a 65536-key queue cannot be filled."""
    import warnings

    from hcl_sklearn.embed.contrastive import ConfigurationWarning

    with pytest.warns(ConfigurationWarning, match=r"momentum=0.999 over the 6 training steps"
                      r".* leaves 99% .* Use momentum <= 0.5"):
        MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2, "momentum": 0.999,
                                       "queue_size": 8}).fit(volumes)
    with pytest.warns(ConfigurationWarning, match=r"queue_size=65536 .* holds 8 keys"):
        MomentumContrastiveEmbedder(**{**FAST, "momentum": 0.5}).fit(volumes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigurationWarning)
        MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2, "momentum": 0.5,
                                       "queue_size": 8}).fit(volumes)
        # queue_size=None: the longest queue the data fill, chosen without a warning
        emb = MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2, "momentum": 0.5,
                                             "queue_size": None}).fit(volumes)
    assert emb.queue_size_ == 8  # 12 training subjects, batches of 4
    # the cosine schedule raises the momentum: prod_k (1 - 0.5 (cos(pi k / 6) + 1) / 2)
    # over the 6 steps keeps 11% of the random weights, where 0.5**6 keeps 1.6%
    kept = np.prod(1 - 0.5 * (np.cos(np.pi * np.arange(6) / 6) + 1) / 2)
    assert round(100 * kept) == 11
    with pytest.warns(ConfigurationWarning, match=r"momentum=0.5 \(cosine schedule\) over the 6 .* leaves 11%.* "
                      r"Use momentum <= 0.5 with momentum_schedule='constant'"):
        MomentumContrastiveEmbedder(**{**FAST, "max_epochs": 2, "momentum": 0.5,
                                       "momentum_schedule": "cosine",
                                       "queue_size": 8}).fit(volumes)


@pytest.mark.slow
def test_default_recipe_learns_on_a_few_hundred_subjects():
    """The defaults learn: ``MomentumContrastiveEmbedder(encoder='cnn', max_epochs=20,
    random_state=0)`` fitted on 320 simulated subjects at 24x28x24 (288 train, 32 for
    the validation loss), 80 held out (chance top-1 0.0125, chance mean rank 40.5).

    Measured spread (estimator seeds 0-2; kernels Haswell/avx2 and SkylakeX/avx512,
    1 thread; own-subject keys left out of the negatives): held-out top-1 0.163-0.344,
    mean rank 4.5-8.1; the random-init encoder (max_epochs=0): top-1 0.013-0.031, mean
    rank 39.7-42.5. Asserted conservatively: top-1 >= 8x chance (0.10; on 160 queries the
    null has 0.0125 +- 0.009) and mean rank <= 0.35 x chance (14).
    """
    from hcl_sklearn.datasets import make_paired_cohort

    X = np.asarray(make_paired_cohort(400, (24, 28, 24), random_state=0).X, np.float32)
    emb = MomentumContrastiveEmbedder(encoder="cnn", max_epochs=20, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.fit(X[:320])
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    Z = emb.set_params(output="projection").transform(X[320:])
    d = Z.shape[1] // 2
    ret = retrieval_scores(Z[:, :d], Z[:, d:], ks=(1, 10))
    print(f"top1 {ret['top1']:.3f} (chance {ret['chance_top1']:.4f}); recall@10 "
          f"{ret['recall@10']:.3f}; mean rank {ret['mean_rank']:.1f}")
    assert ret["top1"] >= 8 * ret["chance_top1"]
    assert ret["mean_rank"] <= 0.35 * (80 + 1) / 2


def test_fit_warns_when_validation_retrieval_stays_at_chance():
    """T1 and T2 of independent noise share nothing, so whatever the training does, the
    validation recall@5 of 20 subjects is the mean of two directions' Binomial(20, 0.25)
    / 20 draws (SD at most one draw's): above the 2-SE bound 0.444 with probability
    <= 0.041 (P(X >= 9)). Measured: warned for random_state 0-4 (recall@5 0.15-0.35)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2, 12, 12, 12)).astype(np.float32)
    emb = MomentumContrastiveEmbedder(encoder="cnn", cnn_widths=(4, 8), embed_dim=8,
                                      proj_dim=8, max_epochs=3, batch_size=8,
                                      validation_fraction=1 / 3, random_state=0,
                                      device="cpu")
    with pytest.warns(ConvergenceWarning, match="validation retrieval is at chance"):
        emb.fit(X)
