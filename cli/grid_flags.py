"""The flags that ``plane`` and ``interp`` share: data, image transform, BN policy, splits and
subsets, engine settings, output and device (``landscape.GridSettings``)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import add_arch_for_pt, add_data, add_device, csv_names, non_negative_int, positive_int, seed_int
from landscape.assets.images import INTERPOLATIONS, ImageTransform
from landscape.assets.resident import DATA_ON
from landscape.engine.numerics import PRECISIONS
from landscape.engine.settings import STRATEGIES


def add_grid_flags(p: argparse.ArgumentParser, *, seed_help: str, output: str) -> None:
    """Declare the shared flags on ``p``; ``seed_help`` says what the seed seeds, ``output``
    names the results file (for --overwrite)."""
    add_data(p)
    add_image_flags(p)
    p.add_argument("--seed", type=seed_int, default=0, help=f"{seed_help} (default 0)")
    p.add_argument("--bn", default=None,
                   help="BN policy: recompute (default for BN models), interpolate or keep")
    p.add_argument("--bn-batch-size", type=positive_int, default=128,
                   help="fixed batch size of BN statistics (default 128)")
    p.add_argument("--splits", type=csv_names, default=("train", "test"),
                   help="splits to evaluate (default train,test)")
    p.add_argument("--train-subset", type=positive_int, default=None,
                   help="use a seeded random subset of N train samples (also for BN statistics)")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="use a seeded random subset of N test samples")
    p.add_argument("--loss", default="ce",
                   help="what points are scored by: ce (cross-entropy and accuracy, default), mse (mean squared "
                        "error, the loss only), or a per-sample loss of your own, path/to/file.py:name or "
                        "package.module:name, taking (outputs, targets) and returning one value per sample")
    p.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=None,
                   help="count accuracy too (default: with ce only)")
    add_engine_flags(p)
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing {output} computed with another configuration")
    p.add_argument("--no-plots", action="store_true", help=f"write {output} and the reports only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    add_arch_for_pt(p)


def add_image_flags(p: argparse.ArgumentParser) -> None:
    """The evaluation transform of an image dataset (``landscape.ImageTransform``); unset parts
    take the dataset's defaults (CIFAR: 32 px, its statistics; ImageFolder: a timm model's
    pretrained configuration, else 256 -> 224 px with ImageNet statistics)."""
    g = p.add_argument_group("image datasets (cifar10, cifar100, imagefolder:PATH)")
    g.add_argument("--img-size", type=non_negative_int, default=None, metavar="N",
                   help="centre crop of N x N after resizing the shorter side to N (or --img-resize); "
                        "0: no resizing at all")
    g.add_argument("--img-resize", type=non_negative_int, default=None, metavar="M",
                   help="resize the shorter side to M before the --img-size crop (default: N)")
    g.add_argument("--mean", type=float_list, default=None, metavar="A,B,C",
                   help="per-channel mean of the normalisation (one value for greyscale)")
    g.add_argument("--std", type=float_list, default=None, metavar="A,B,C",
                   help="per-channel std of the normalisation (one value for greyscale)")
    g.add_argument("--img-channels", type=int, choices=(1, 3), default=None,
                   help="1: greyscale, 3: RGB (default for ImageFolder trees)")
    g.add_argument("--interpolation", choices=INTERPOLATIONS, default=None,
                   help="of the resize (default: the model's, else bilinear)")


def image_transform(args: argparse.Namespace) -> ImageTransform | None:
    """``ImageTransform`` from the image flags, or None when none is given."""
    values = dict(size=args.img_size, resize=args.img_resize, mean=args.mean, std=args.std,
                  channels=args.img_channels, interpolation=args.interpolation)
    return ImageTransform(**values) if any(v is not None for v in values.values()) else None


def image_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The image flags given, as a run configuration records them (``RunConfig.image``)."""
    tf = image_transform(args)
    return None if tf is None else {k: v for k, v in tf.to_dict().items() if v is not None}


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,0.5,0.5, got {text!r}") from None
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """The engine settings: none of them changes the numbers, except --precision."""
    p.add_argument("--batch-size", type=positive_int, default=512,
                   help="evaluation batch size (speed only; default 512)")
    p.add_argument("--engine", default="auto", choices=STRATEGIES,
                   help="evaluation strategy: loop or vmap; auto measures both (default)")
    p.add_argument("--group-size", type=positive_int, default=None,
                   help="points evaluated together (default 8)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (default: IEEE float32, also on GPUs), tf32 (TF32 tensor cores on GPUs) or "
                        "bf16 autocast: the last two are faster on recent GPUs and change the numbers "
                        "slightly (recorded in the file; benchmarks/suite.py measures by how much)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format for image models (speed only, often faster on GPU)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="points the loop engine evaluates at once, each in its own thread (on a GPU "
                        "each on its own CUDA stream; speed only; default: measured with --engine "
                        "auto, else 1)")
    p.add_argument("--data-on", default="auto", choices=DATA_ON,
                   help="on a GPU, where the evaluation data lives: device, host (copied to the GPU "
                        "batch by batch) or auto (default: on the GPU when it takes at most half of its "
                        "free memory); speed only")


def grid_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``GridSettings`` fields from the shared flags, as keyword arguments of a config."""
    return dict(bn=args.bn, bn_batch_size=args.bn_batch_size, splits=args.splits, train_subset=args.train_subset,
                test_subset=args.test_subset, seed=args.seed, batch_size=args.batch_size, engine=args.engine,
                group_size=args.group_size, precision=args.precision, channels_last=args.channels_last,
                workers=args.workers, data_on=args.data_on, image=image_transform(args), loss=args.loss,
                accuracy=args.accuracy)
