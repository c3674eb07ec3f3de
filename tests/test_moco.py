"""The torch pieces of the contrastive embedder against closed forms.

Tolerances: the InfoNCE losses compute in float32 and are compared with a float32
roundoff bound (``_loss_bound``); the modules are cast to float64 (``.double()``), where
the closed forms agree to roundoff (~1e-15 relative). ``torch.testing.assert_close``
without explicit tolerances uses torch's per-dtype defaults (float64: rtol 1e-7, atol
1e-7, far above the ~1e-13 float64 roundoff of these reductions of <= 10^3 terms; float32: rtol
1.3e-6, atol 1e-5, ~10 ulps); the suite passes with them under the OpenBLAS/torch
kernels of ``tests/kernel_matrix.py``.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hcl_sklearn.embed.nn.cnn import ConvEncoder3d
from hcl_sklearn.embed.nn.moco import (
    MomentumContrast,
    ProjectionHead,
    SmallBatchSafeBatchNorm1d,
    SymmetricInfoNCE,
    in_batch_info_nce,
    info_nce,
)
from hcl_sklearn.embed.nn.runtime import (
    autocast_context,
    needs_grad_scaler,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from hcl_sklearn.embed.nn.vit import (
    VisionTransformer3d,
    check_patch_size,
    sincos_position_embedding_3d,
)


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _info_nce_reference(q, k, neg, tau):
    """-log(exp(q.k/tau) / (exp(q.k/tau) + sum_n exp(q.n/tau))), float64, loop form."""
    losses = []
    for qi, ki in zip(q, k):
        pos = np.exp(qi @ ki / tau)
        den = pos + sum(np.exp(qi @ n / tau) for n in neg)
        losses.append(-np.log(pos / den))
    return float(np.mean(losses))


def _loss_bound(p, tau, loss):
    """Float32 error bound of an InfoNCE loss against its float64 closed form.

    The losses compute in float32 (inputs cast): each logit ``q.k / tau`` is a p-term
    dot product of unit vectors, within ``(p + 2) u / tau`` (Higham, Lemma 3.1, plus
    the casts of q and k); log-sum-exp and the batch mean are 1-Lipschitz in the
    largest logit error; the result is rounded once more (``u |loss|``). Times 2 for
    the exp/log roundoff (a few u each).
    """
    u = 2.0 ** -24
    return 2 * ((p + 2) * u / tau + u * abs(loss))


def _small_moco(**kw):
    params = dict(volume_shape=(8, 8, 8), encoder="cnn", embed_dim=6, cnn_widths=(3,),
                  proj_dim=4, queue_size=6, momentum=0.9)
    params.update(kw)
    return MomentumContrast(**params).double()


# --------------------------------------------------------------------------- losses
def test_info_nce_matches_closed_form():
    rng = np.random.default_rng(0)
    q, k, neg = _unit(rng, 5, 7), _unit(rng, 5, 7), _unit(rng, 11, 7)
    got = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor(neg), 0.07)
    assert float(got) == pytest.approx(_info_nce_reference(q, k, neg, 0.07),
                                       abs=_loss_bound(7, 0.07, 10.7))


def test_info_nce_leaves_excluded_negatives_out():
    """Excluding negatives equals the closed form computed without them, row by row."""
    rng = np.random.default_rng(3)
    q, k, neg = _unit(rng, 4, 5), _unit(rng, 4, 5), _unit(rng, 6, 5)
    exclude = np.zeros((4, 6), dtype=bool)
    exclude[0, [1, 4]] = True
    exclude[2, :] = True  # every negative out: the loss of that row is 0
    ref = np.mean([_info_nce_reference(q[i:i + 1], k[i:i + 1], neg[~exclude[i]], 0.1)
                   if (~exclude[i]).any() else 0.0 for i in range(4)])
    got = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor(neg), 0.1,
                   exclude=torch.tensor(exclude))
    assert float(got) == pytest.approx(ref, abs=_loss_bound(5, 0.1, ref))


def test_queue_remembers_subjects_and_masks_their_stale_keys():
    moco = _small_moco(queue_size=6, queue_modalities="both")
    k = F.normalize(torch.randn(4, 4, dtype=torch.float64), dim=1)
    assert (moco.queue_ids == -1).all()  # initial random keys belong to nobody
    moco.enqueue(k, k, torch.tensor([7, 3, 9, 1]))
    mask = moco.false_negatives(torch.tensor([3, 5]))
    expected = torch.zeros(2, 6, dtype=torch.bool)
    expected[0, 1] = True
    torch.testing.assert_close(mask, expected)
    moco.enqueue(k, k)  # no ids: slots 4, 5, 0, 1 belong to nobody
    assert moco.queue_ids.tolist() == [-1, -1, 9, 1, -1, -1]


def test_in_batch_info_nce_matches_closed_form():
    rng = np.random.default_rng(1)
    a, b = _unit(rng, 4, 3), _unit(rng, 4, 3)
    tau = 0.5
    ref = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(4):  # negatives of row i: the other rows of the other block
            others = np.delete(y, i, axis=0)
            ref += 0.5 / 4 * _info_nce_reference(x[i:i + 1], y[i:i + 1], others, tau)
    got = in_batch_info_nce(torch.tensor(a), torch.tensor(b), tau)
    assert float(got) == pytest.approx(ref, abs=_loss_bound(3, tau, ref))


def test_symmetric_loss_is_mean_of_both_directions():
    rng = np.random.default_rng(2)
    q1, q2, k1, k2 = (torch.tensor(_unit(rng, 3, 5)) for _ in range(4))
    n1, n2 = torch.tensor(_unit(rng, 6, 5)), torch.tensor(_unit(rng, 6, 5))
    got = SymmetricInfoNCE(0.2)(q1, q2, k1, k2, n1, n2)
    ref = 0.5 * (_info_nce_reference(q1.numpy(), k2.numpy(), n1.numpy(), 0.2)
                 + _info_nce_reference(q2.numpy(), k1.numpy(), n2.numpy(), 0.2))
    assert float(got) == pytest.approx(ref, abs=_loss_bound(5, 0.2, ref))


# --------------------------------------------------------------------------- EMA / queue
def test_momentum_update_equals_formula():
    torch.manual_seed(0)
    moco = _small_moco(momentum=0.75)
    with torch.no_grad():  # make query and key weights differ
        for p in moco.query_parameters():
            p.add_(torch.randn_like(p))
    q = [p.detach().clone() for p in moco.query_parameters()]
    k = [p.detach().clone() for p in moco.key_parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(q, k))
    moco.momentum_update()
    for qp, kp, new in zip(q, k, moco.key_parameters()):
        # float64 (the module is .double()): one multiply-add each side, error <= 2 eps |x|
        torch.testing.assert_close(new, 0.75 * kp + 0.25 * qp, rtol=1e-12, atol=1e-12)


def test_forward_train_updates_keys_before_computing_them():
    torch.manual_seed(0)
    moco = _small_moco(momentum=0.5)
    with torch.no_grad():
        for p in moco.query_parameters():
            p.add_(torch.randn_like(p))
    x = torch.randn(4, 2, 8, 8, 8, dtype=torch.float64)
    expected = [0.5 * kp.detach() + 0.5 * qp.detach()
                for qp, kp in zip(moco.query_parameters(), moco.key_parameters())]
    q1, _, k1, k2 = moco.forward_train(x)
    for p, e in zip(moco.key_parameters(), expected):
        torch.testing.assert_close(p, e)
    # the keys are those of the *updated* key encoder and projector
    s1, s2 = moco.tokens(x, key=True)
    with torch.no_grad():
        k = torch.cat([moco.projector_k(s1.mean(1)), moco.projector_k(s2.mean(1))])
        torch.testing.assert_close(torch.cat([k1, k2]), k)
    assert q1.requires_grad and not k1.requires_grad
    assert all(not p.requires_grad for p in moco.key_parameters())
    torch.testing.assert_close(q1.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_projection_batchnorm_statistics_are_per_modality_in_training():
    """T1 queries are normalised with T1 batch statistics only, as in the reference's
    two projector calls: changing the T2 volumes leaves the T1 queries unchanged, and
    the T1 pre-BatchNorm features are centred on their own batch mean."""
    torch.manual_seed(0)
    moco = _small_moco()
    moco.train()
    x = torch.randn(5, 2, 8, 8, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 1] = 3.0 * torch.randn_like(y[:, 1]) + 2.0  # other T2 volumes, other scale
    q1_x, q2_x, _, _ = moco.forward_train(x)
    q1_y, q2_y, _, _ = moco.forward_train(y)
    torch.testing.assert_close(q1_x, q1_y)
    assert not torch.allclose(q2_x, q2_y)
    lin, bn = moco.projector_q.net[0], moco.projector_q.net[1]
    h = lin(moco.pool(moco.tokens(x)[0]))
    expected = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(bn(h), expected * bn.weight + bn.bias)


def test_queue_is_filled_circularly_and_by_modality():
    moco = _small_moco(queue_size=6, queue_modalities="both")
    k1 = F.normalize(torch.randn(4, 4, dtype=torch.float64), dim=1)
    k2 = F.normalize(torch.randn(4, 4, dtype=torch.float64), dim=1)
    moco.enqueue(k1, k2)
    torch.testing.assert_close(moco.queue_t2[:4], k2)
    torch.testing.assert_close(moco.queue_t1[:4], k1)
    assert int(moco.queue_ptr) == 4
    moco.enqueue(k1 * 0 + k1[:1], k2 * 0 + k2[:1])  # 4 more: slots 4, 5, 0, 1
    assert int(moco.queue_ptr) == 2
    for slot in (4, 5, 0, 1):
        torch.testing.assert_close(moco.queue_t2[slot], k2[0])
    torch.testing.assert_close(moco.queue_t2[2:4], k2[2:4])
    neg_t1_query, neg_t2_query = moco.negatives()
    assert neg_t1_query is moco.queue_t2 and neg_t2_query is moco.queue_t1


def test_reference_queue_serves_t2_keys_to_both_directions():
    moco = _small_moco(queue_modalities="t2")
    assert not hasattr(moco, "queue_t1")
    a, b = moco.negatives()
    assert a is moco.queue_t2 and b is moco.queue_t2


def test_separate_encoders_per_modality():
    moco = _small_moco(shared_encoder=False)
    assert set(moco.encoder_q) == {"t1", "t2"}
    x = torch.randn(2, 2, 8, 8, 8, dtype=torch.float64)
    z = moco(x, output="pooled")
    ref1 = moco.encoder_q["t1"](x[:, :1]).mean(1)
    torch.testing.assert_close(z[:, 0], ref1)


def test_output_forms_are_consistent():
    torch.manual_seed(0)
    moco = _small_moco().eval()
    x = torch.randn(3, 2, 8, 8, 8, dtype=torch.float64)
    tokens = moco(x, output="tokens")
    pooled = moco(x, output="pooled")
    torch.testing.assert_close(pooled, tokens.mean(2))
    proj = moco(x, output="projection")
    torch.testing.assert_close(proj[:, 1], moco.projector_q(pooled[:, 1]))  # eval: per-row
    with pytest.raises(ValueError, match="output must be"):
        moco(x, output="cls")


def test_moco_rejects_bad_settings():
    with pytest.raises(ValueError, match="queue_modalities"):
        _small_moco(queue_modalities="t1")
    with pytest.raises(ValueError, match="encoder must be"):
        _small_moco(encoder="resnet")


# --------------------------------------------------------------------------- BatchNorm
def test_small_batch_batchnorm_uses_running_stats_below_three():
    torch.manual_seed(0)
    bn = SmallBatchSafeBatchNorm1d(5)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    bn.train()
    for n in (1, 2):
        x = torch.randn(n, 5)
        torch.testing.assert_close(bn(x), (x - mean0) / torch.sqrt(var0 + bn.eps))
    torch.testing.assert_close(bn.running_mean, mean0)  # not updated by tiny batches
    x = torch.randn(6, 5)
    ref = torch.nn.BatchNorm1d(5)
    ref.load_state_dict(bn.state_dict())
    ref.train()
    torch.testing.assert_close(bn(x), ref(x))  # usual behaviour from 3 samples on


# --------------------------------------------------------------------------- encoders
def test_vit_patch_grid_padding_and_errors():
    assert check_patch_size((182, 224, 182), (14, 16, 14)) == (13, 14, 13)
    assert check_patch_size((20, 16, 9), (8, 8, 8)) == (3, 2, 2)  # zero-padded
    with pytest.raises(ValueError, match="larger than the volume"):
        check_patch_size((8, 8, 8), (14, 16, 14))
    vit = VisionTransformer3d((20, 16, 9), patch_size=(8, 8, 8), embed_dim=12, depth=1,
                              n_heads=3)
    assert vit(torch.zeros(1, 1, 20, 16, 9)).shape == (1, 12, 12)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        VisionTransformer3d((16, 16, 16), patch_size=(8, 8, 8), embed_dim=10, n_heads=3)


def test_vit_padding_equals_explicit_zero_padding():
    torch.manual_seed(0)
    vit = VisionTransformer3d((10, 8, 8), patch_size=(4, 4, 4), embed_dim=6, depth=1,
                              n_heads=2).eval()
    x = torch.randn(1, 1, 10, 8, 8)
    padded = torch.zeros(1, 1, 12, 8, 8)
    padded[..., :10, :, :] = x
    torch.testing.assert_close(vit(x), vit(padded))


def test_sincos_positions_closed_form():
    grid, dim = (3, 4, 5), 12
    emb = sincos_position_embedding_3d(grid, dim).numpy()
    assert emb.shape == (60, 12)
    per_axis = 4
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    for idx, (d, h, w) in enumerate(np.ndindex(*grid)):
        for a, pos in enumerate((d, h, w)):
            block = emb[idx, a * per_axis:(a + 1) * per_axis]
            # the table is float32: |sin|, |cos| <= 1 rounded once, error <= 2**-24 = 6e-8
            np.testing.assert_allclose(block, np.r_[np.sin(pos * omega), np.cos(pos * omega)],
                                       atol=2.0 ** -24 * 2)
    # embed_dim not a multiple of 6: the remainder channels are zero
    assert np.all(sincos_position_embedding_3d(grid, 14).numpy()[:, 12:] == 0)


def test_cnn_tokens_grid():
    cnn = ConvEncoder3d((9, 16, 17), embed_dim=5, widths=(2, 3))
    assert cnn.grid == (3, 4, 5)
    assert cnn(torch.zeros(2, 1, 9, 16, 17)).shape == (2, 60, 5)
    # per-sample: one subject's tokens do not depend on the others in the batch
    x = torch.randn(3, 1, 9, 16, 17)
    torch.testing.assert_close(cnn(x)[:1], cnn(x[:1]))


# --------------------------------------------------------------------------- runtime
def test_runtime_device_and_precision():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("tpu-ish")
    with pytest.raises(TypeError):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_precision("cpu", "auto") is None
    assert resolve_precision("cpu", "bf16") is torch.bfloat16
    assert not needs_grad_scaler("cpu", "bf16")
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("cpu", "int8")
    with autocast_context("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_seed_everything_reproducible():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    seed_everything(4)
    assert not torch.equal(a[0], torch.rand(3))


def test_per_modality_projector_batchnorm_keeps_modalities_apart_in_eval():
    """projector_batchnorm='per_modality': T2 has its own BatchNorm (statistics and
    affine); in eval mode T1 uses the T1 running statistics, T2 the T2 ones."""
    torch.manual_seed(0)
    moco = _small_moco(projector_batchnorm="per_modality")
    head = moco.projector_q
    assert head.t2_norm is not None and _small_moco().projector_q.t2_norm is None
    moco.train()
    x = torch.randn(6, 2, 8, 8, 8, dtype=torch.float64)
    x[:, 1] = 4.0 + 2.0 * x[:, 1]  # T2 volumes on another scale
    moco.forward_train(x)
    bn1, bn2 = head.net[1], head.t2_norm
    assert not torch.allclose(bn1.running_mean, bn2.running_mean)
    moco.eval()
    with torch.no_grad():
        p = moco(x, output="pooled")
        z = moco(x, output="projection")
        h2 = head.net[0](p[:, 1])
        manual = (h2 - bn2.running_mean) / torch.sqrt(bn2.running_var + bn2.eps)
        manual = head.net[3](torch.relu(manual * bn2.weight + bn2.bias))
    torch.testing.assert_close(z[:, 1], torch.nn.functional.normalize(manual, dim=1))
    torch.testing.assert_close(z[:, 0], head(p[:, 0]))
    # the EMA covers the T2 BatchNorm of the key projector too
    assert len(moco.query_parameters()) == len(moco.key_parameters())
    with pytest.raises(ValueError, match="batchnorm"):
        _small_moco(projector_batchnorm="both")


def test_projection_head_hidden_width():
    """hidden_dim sets the hidden layer (and its BatchNorms); None keeps the input width."""
    head = ProjectionHead(40, 8, batchnorm="per_modality", hidden_dim=5)
    assert (head.net[0].in_features, head.net[0].out_features) == (40, 5)
    assert head.net[3].in_features == 5 and head.t2_norm.num_features == 5
    assert head(torch.randn(3, 40), modality=1).shape == (3, 8)
    assert ProjectionHead(40, 8).net[0].out_features == 40
    moco = _small_moco(pooling=(2, 2, 2), proj_hidden_dim=7)
    assert moco.projector_q.net[0].out_features == 7 == moco.projector_k.net[0].out_features
