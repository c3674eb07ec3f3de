"""The UDIP 3-D convolutional autoencoder (single-modality baseline) and its masked MSE loss.

Architecture of the reference baseline ("UDIP", Xie et al.; see docs/autoencoder.md):
a convolution block, four encoder blocks (each 2x max-pooling then a convolution
block, doubling the channels), a linear 128-d latent, a linear map back to the
bottleneck grid, four decoder blocks (a convolution block halving the channels
then a 2x transposed convolution), and a final convolution block ending in a
1x1x1 convolution to one channel. A convolution block is two 3x3x3 convolutions,
each followed by BatchNorm and LeakyReLU. The loss is the MSE inside the brain
mask (``mask = input != 0``).

Any input grid works: the volume is zero-padded (the background value) to a
multiple of 16 per axis (if that gives a single bottleneck voxel, the longest axis
is padded to 32, so BatchNorm at the bottleneck always sees more than one value
per channel), and the reconstruction is cropped back to the input shape. The reference grid 182x224x182 pads to 192x224x192, a 12x14x12 bottleneck.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvBlock3d", "PairedAutoencoders", "UDIPAutoencoder", "masked_mse"]

_N_LEVELS = 4
_MULTIPLE = 2**_N_LEVELS


def masked_mse(reconstruction, target, mask=None):
    """Mean squared error over the voxels inside the mask.

    ``sum(mask * (reconstruction - target)**2) / sum(mask)``, pooled over the whole
    batch, as the reference computes it. The default mask is ``target != 0``
    (the brain after skull stripping; background is exactly 0 after z-scoring).

    Parameters
    ----------
    reconstruction, target : Tensor of the same shape
    mask : bool Tensor of that shape or None

    Returns
    -------
    loss : 0-d Tensor (0 when the mask is empty)

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.udip import masked_mse
    >>> target = torch.tensor([0.0, 1.0, 2.0, 0.0])
    >>> float(masked_mse(torch.tensor([5.0, 1.0, 0.0, 0.0]), target))
    2.0
    """
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction shape {tuple(reconstruction.shape)} differs from target shape "
            f"{tuple(target.shape)}."
        )
    if mask is None:
        mask = target != 0
    mask = mask.float()
    sq = (reconstruction.float() - target.float()) ** 2 * mask
    return sq.sum() / mask.sum().clamp_min(1.0)


class ConvBlock3d(nn.Sequential):
    """Two (Conv3d 3x3x3 → BatchNorm3d → LeakyReLU) layers."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.LeakyReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.LeakyReLU(inplace=True),
        )


def padded_shape(input_shape):
    """Grid the network runs on: each axis rounded up to a multiple of 16.

    If that leaves a single bottleneck voxel, the longest axis is padded to 32.

    Examples
    --------
    >>> from hcl_sklearn.embed.nn.udip import padded_shape
    >>> padded_shape((182, 224, 182)), padded_shape((16, 12, 16))
    ((192, 224, 192), (32, 16, 16))
    """
    shape = [_MULTIPLE * math.ceil(s / _MULTIPLE) for s in input_shape]
    if math.prod(shape) == _MULTIPLE ** len(shape):
        shape[int(max(range(len(shape)), key=lambda i: input_shape[i]))] = 2 * _MULTIPLE
    return tuple(shape)


class UDIPAutoencoder(nn.Module):
    """Single-modality 3-D convolutional autoencoder with a linear latent.

    Parameters
    ----------
    input_shape : tuple of 3 int
        Spatial shape ``(D, H, W)`` of the (preprocessed) volumes.
    latent_dim : int, default=128
    base_channels : int, default=16
        Channels of the first block; the encoder blocks have 2, 4, 8, 16 times as
        many (16 → 32, 64, 128, 256 in the reference).

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.udip import UDIPAutoencoder
    >>> ae = UDIPAutoencoder((20, 24, 20), latent_dim=8, base_channels=2)
    >>> recon, z = ae(torch.randn(3, 1, 20, 24, 20))
    >>> tuple(recon.shape), tuple(z.shape)
    ((3, 1, 20, 24, 20), (3, 8))
    """

    def __init__(self, input_shape, latent_dim=128, base_channels=16):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be 3 positive ints; got {input_shape!r}.")
        self.latent_dim = int(latent_dim)
        self.base_channels = int(base_channels)
        self.padded_shape = padded_shape(self.input_shape)
        self.bottleneck_shape = tuple(s // _MULTIPLE for s in self.padded_shape)
        widths = [self.base_channels * 2**i for i in range(_N_LEVELS + 1)]

        self.stem = ConvBlock3d(1, widths[0])
        self.encoder = nn.ModuleList(
            nn.Sequential(nn.MaxPool3d(2), ConvBlock3d(widths[i], widths[i + 1]))
            for i in range(_N_LEVELS)
        )
        n_flat = widths[-1] * math.prod(self.bottleneck_shape)
        self.to_latent = nn.Linear(n_flat, self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, n_flat)
        self.decoder = nn.ModuleList(
            nn.Sequential(
                ConvBlock3d(widths[i + 1], widths[i]),
                nn.ConvTranspose3d(widths[i], widths[i], kernel_size=2, stride=2),
            )
            for i in reversed(range(_N_LEVELS))
        )
        self.head = nn.Sequential(ConvBlock3d(widths[0], widths[0]),
                                  nn.Conv3d(widths[0], 1, kernel_size=1))

    def _pad(self, x):
        pads = []
        for have, want in zip(reversed(self.input_shape), reversed(self.padded_shape)):
            before = (want - have) // 2
            pads += [before, want - have - before]
        return F.pad(x, pads)

    def _crop(self, x):
        slices = [slice(None), slice(None)]
        for have, want in zip(self.input_shape, self.padded_shape):
            before = (want - have) // 2
            slices.append(slice(before, before + have))
        return x[tuple(slices)]

    def _check(self, x):
        if x.ndim != 5 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"expected volumes of shape (batch, 1, {', '.join(map(str, self.input_shape))}); "
                f"got {tuple(x.shape)}. The model was built for input_shape={self.input_shape}."
            )

    def encode(self, x):
        """Latent code of shape ``(batch, latent_dim)`` for volumes ``(batch, 1, D, H, W)``."""
        self._check(x)
        h = self.stem(self._pad(x))
        for block in self.encoder:
            h = block(h)
        return self.to_latent(torch.flatten(h, 1))

    def decode(self, z):
        """Reconstruction ``(batch, 1, D, H, W)`` from latent codes ``(batch, latent_dim)``."""
        h = self.from_latent(z).view(z.shape[0], -1, *self.bottleneck_shape)
        for block in self.decoder:
            h = block(h)
        return self._crop(self.head(h))

    def forward(self, x):
        """Return ``(reconstruction, latent)``."""
        z = self.encode(x)
        return self.decode(z), z


class PairedAutoencoders(nn.Module):
    """Independent UDIP autoencoders for T1 and T2, applied to the two channels of a pair.

    The two models share nothing (no parameters, no normalisation statistics): the
    gradient of the summed loss with respect to one model's parameters is the
    gradient of that model's own loss, so training them together on the same batches
    is training one model per modality, in one pass over the data.

    Parameters
    ----------
    input_shape : tuple of 3 int
    latent_dim : int, default=128
    base_channels : int, default=16
    modalities : tuple of str, default=('t1', 't2')
        Names of the channels, in order.

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.udip import PairedAutoencoders
    >>> m = PairedAutoencoders((16, 16, 16), latent_dim=4, base_channels=2)
    >>> recon, z = m(torch.randn(2, 2, 16, 16, 16))
    >>> tuple(recon.shape), tuple(z.shape)
    ((2, 2, 16, 16, 16), (2, 2, 4))
    """

    def __init__(self, input_shape, latent_dim=128, base_channels=16, modalities=("t1", "t2")):
        super().__init__()
        self.modalities = tuple(modalities)
        self.models = nn.ModuleDict(
            {m: UDIPAutoencoder(input_shape, latent_dim, base_channels) for m in self.modalities}
        )

    def encode(self, x):
        """Latents ``(batch, n_modalities, latent_dim)`` of pairs ``(batch, 2, D, H, W)``."""
        return torch.stack([self.models[m].encode(x[:, c:c + 1])
                            for c, m in enumerate(self.modalities)], dim=1)

    def forward(self, x):
        """Return ``(reconstructions (batch, 2, D, H, W), latents (batch, 2, latent_dim))``."""
        if x.ndim != 5 or x.shape[1] != len(self.modalities):
            raise ValueError(
                f"expected paired volumes of shape (batch, {len(self.modalities)}, D, H, W); "
                f"got {tuple(x.shape)}."
            )
        outs = [self.models[m](x[:, c:c + 1]) for c, m in enumerate(self.modalities)]
        return (torch.cat([r for r, _ in outs], dim=1), torch.stack([z for _, z in outs], dim=1))
