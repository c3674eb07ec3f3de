"""IntensityAugmentation and the embedder's ``augment`` option."""

import numpy as np
import pytest
import torch

from hcl_sklearn import MomentumContrastiveEmbedder
from hcl_sklearn.embed.nn.augment import IntensityAugmentation

pytestmark = pytest.mark.filterwarnings(
    "ignore::hcl_sklearn.embed.contrastive.ConfigurationWarning")


def _brains(b=400, shape=(6, 7, 5)):
    x = torch.zeros(b, 2, *shape, dtype=torch.float64)
    x[:, :, 1:-1, 1:-1, 1:-1] = 1.0
    return x


def test_each_term_has_its_distribution_and_the_background_stays_zero():
    """With one term on at a time, on constant brains of value 1: gain ~ U(-0.3, 0.3)
    (SD 0.3/sqrt(3) = 0.173), offset ~ N(0, 0.2^2), noise SD 0.5; 400 subjects x 2
    modalities = 800 draws, so a sample SD is within ~2.5% (1/sqrt(2 * 800)) of its
    value: 10% is 4 SE. T1 and T2 draws are independent (|corr| < 4/sqrt(400) = 0.2)."""
    torch.manual_seed(0)
    x = _brains()
    inside = x[0, 0] != 0
    for kw, sd in (({"gain": 0.3}, 0.3 / np.sqrt(3)), ({"offset": 0.2}, 0.2),
                   ({"noise": 0.5}, 0.5)):
        params = {"gain": 0, "offset": 0, "bias_field": 0, "noise": 0, **kw}
        y = IntensityAugmentation(**params)(x)
        assert (y[:, :, ~inside] == 0).all()
        if "noise" in kw:
            d = (y - x)[:, :, inside]
            assert abs(float(d.std()) / sd - 1) < 0.1
            continue
        per = (y - x)[:, :, inside].mean(dim=2)          # constant inside each volume
        assert torch.allclose((y - x)[:, :, inside], per[..., None], atol=1e-12)
        assert abs(float(per.std()) / sd - 1) < 0.1
        corr = np.corrcoef(per[:, 0].numpy(), per[:, 1].numpy())[0, 1]
        assert abs(corr) < 0.2


def test_bias_field_is_log_linear():
    """log(y) of a constant brain is linear in the voxel coordinates: its second
    differences along each axis vanish (float64 roundoff ~1e-15)."""
    torch.manual_seed(1)
    x = _brains(4, (8, 8, 8))
    y = IntensityAugmentation(gain=0, offset=0, bias_field=0.3, noise=0)(x)
    logy = torch.log(y[:, :, 1:-1, 1:-1, 1:-1])
    for axis in (2, 3, 4):
        assert torch.diff(logy, n=2, dim=axis).abs().max() < 1e-12
    assert torch.diff(logy, dim=2).abs().max() > 1e-3          # there is a field


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="expected \\(batch, modality, D, H, W\\)"):
        IntensityAugmentation()(torch.zeros(2, 4, 4, 4))


def test_embedder_augments_training_batches_only():
    """augment='intensity' changes training (another model) but not transform: the same
    fitted net embeds the same volumes identically twice."""
    rng = np.random.default_rng(0)
    X = (rng.random((16, 2, 8, 8, 8)) + 0.1).astype(np.float32)
    kw = dict(encoder="cnn", embed_dim=8, cnn_widths=(4,), proj_dim=8, batch_size=4,
              max_epochs=2, validation_fraction=None, momentum=0.5, random_state=0)
    plain = MomentumContrastiveEmbedder(**kw, augment="none").fit(X)
    aug = MomentumContrastiveEmbedder(**kw, augment="intensity").fit(X)
    assert isinstance(aug.net_.augmentation, IntensityAugmentation)
    assert plain.net_.augmentation is None
    Z = aug.transform(X)
    np.testing.assert_array_equal(Z, aug.transform(X))
    assert not np.allclose(Z, plain.transform(X))
    custom = MomentumContrastiveEmbedder(**kw, augment=lambda x: x).fit(X)   # identity
    np.testing.assert_array_equal(custom.transform(X), plain.transform(X))
    with pytest.raises(ValueError, match="augment"):
        MomentumContrastiveEmbedder(**kw, augment="flip").fit(X)
