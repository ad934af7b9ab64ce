"""Assets: what a landscape is computed from (checkpoints, models, datasets).

- ``checkpoint``: self-describing ``.safetensors`` files (and plain ``.pt`` state dicts).
- ``models``: the model registry (``register_model``, ``create_model``, ``timm:<name>``).
- ``datasets``: the dataset registry (``register_dataset``, ``load_dataset``, ``imagefolder:PATH``),
  filled with the built-ins of ``mnist1d`` (offline MNIST-1D) and ``images`` (CIFAR, ImageFolder).
- ``resident``: evaluation data as tensors (subsets, uint8 images, placement on the device).
- ``ood``: corrupted test sets (MNIST-1D-C, CIFAR-100-C).
- ``registry``: the small name registry both registries are built on.

The public names are exported from ``landscape`` itself.
"""
