"""Torch building blocks of the neural estimators.

* :mod:`.runtime` - device / precision resolution and seeding;
* :mod:`.vit` - the 3-D Vision Transformer encoder of the reference;
* :mod:`.cnn` - a small 3-D CNN encoder for CPU-sized configs;
* :mod:`.moco` - the momentum-contrast module (query/key encoders, queue, InfoNCE).
"""
