"""A small 3-D CNN encoder for CPU-sized configurations.

Each stage halves the grid with a stride-2 3x3x3 convolution followed by a 3x3x3
convolution, each with GroupNorm (per sample, so it behaves the same at batch size 1
and in train and eval mode, and couples no subjects as BatchNorm would) and ReLU.
(Without normalisation, training at lr 1e-3 collapsed to a constant embedding in our
runs.) A final 1x1x1 convolution maps to
``embed_dim``; every position of the last grid is a token, so the encoder has the
same interface as :class:`~hcl_sklearn.embed.nn.vit.VisionTransformer3d`: ``(B, N, C)``.
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["ConvEncoder3d"]


def _norm(channels):
    return nn.GroupNorm(min(8, channels), channels)


class ConvEncoder3d(nn.Module):
    """3-D CNN returning the last feature map as tokens.

    Parameters
    ----------
    volume_shape : tuple of 3 int
        Spatial shape of the input volumes.
    in_chans : int, default=1
    embed_dim : int, default=64
        Channels of the output tokens.
    widths : tuple of int, default=(16, 32, 64)
        Channels of the stages; each stage halves every axis (rounding up).

    Attributes
    ----------
    grid : tuple of 3 int
        Token grid; ``n_tokens = prod(grid)``.

    Examples
    --------
    >>> import torch
    >>> from hcl_sklearn.embed.nn.cnn import ConvEncoder3d
    >>> cnn = ConvEncoder3d((32, 32, 32), embed_dim=24, widths=(4, 8))
    >>> cnn(torch.zeros(2, 1, 32, 32, 32)).shape
    torch.Size([2, 512, 24])
    """

    def __init__(self, volume_shape, in_chans=1, embed_dim=64, widths=(16, 32, 64)):
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one stage.")
        layers, c_in = [], in_chans
        grid = tuple(int(s) for s in volume_shape)
        for c in widths:
            layers += [
                nn.Conv3d(c_in, c, 3, stride=2, padding=1, bias=False), _norm(c),
                nn.ReLU(inplace=True),
                nn.Conv3d(c, c, 3, padding=1, bias=False), _norm(c), nn.ReLU(inplace=True),
            ]
            c_in = c
            grid = tuple((s + 1) // 2 for s in grid)
        layers.append(nn.Conv3d(c_in, embed_dim, 1))
        self.features = nn.Sequential(*layers)
        self.grid = grid
        self.embed_dim = embed_dim
        self.n_tokens = math.prod(grid)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        """Tokens ``(B, n_tokens, embed_dim)`` of volumes ``(B, in_chans, D, H, W)``."""
        return self.features(x).flatten(2).transpose(1, 2)
