"""``landscape pretrain``: train a model from scratch (the source of transfer)."""

from __future__ import annotations

import argparse

from cli.common import add_data, add_device, fetch_data, finite_float, json_dict, positive_int, seed_int
from cli.grid_flags import add_image_flags, image_transform
from cli.outputs import model_bytes, output_file
from landscape.atomic import save_or_rescue
from landscape.errors import UserError

EXAMPLES = """examples:
  landscape pretrain --data mnist1d-source --arch mnist1d_cnn --epochs 6 --seed 0 --out pre.safetensors
  landscape pretrain --data cifar10 --data-root ~/data --arch resnet20 --epochs 100 --lr 0.1 --out r20.safetensors
  landscape pretrain --data nets/data.py:splits --arch nets/tiny.py:TinyCNN --epochs 20 --out mine.safetensors
  landscape pretrain --data imagefolder:data/shapes --arch timm:resnet18 --img-size 32 --out shapes.safetensors
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="train a model from scratch on a source dataset",
                       description=__doc__, epilog=EXAMPLES)
    add_data(p, default="mnist1d-source")
    p.add_argument("--arch", default=None,
                   help="architecture (default: the dataset's default, mnist1d_cnn for MNIST-1D)")
    p.add_argument("--arch-kwargs", type=json_dict, default=None,
                   help='JSON keyword arguments, e.g. \'{"width": 32}\'')
    p.add_argument("--epochs", type=positive_int, default=6)
    p.add_argument("--lr", type=finite_float, default=0.05, help="peak learning rate (cosine)")
    p.add_argument("--wd", type=finite_float, default=5e-4, help="weight decay")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    add_image_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from ensembles import TrainConfig, pretrain
    from landscape import dataset_info, resolve_device, save_checkpoint
    from landscape.assets.models import build_model
    from landscape.assets.resolve import dataset_name

    data = dataset_name(args.data)  # your own data (path/to/file.py:factory) is read once, here
    arch = args.arch or dataset_info(data).default_arch
    if arch is None:
        raise UserError(f"the data {data!r} names no default architecture; pass --arch")
    config = TrainConfig(epochs=args.epochs, lr=args.lr, wd=args.wd,
                         batch_size=args.batch_size, seed=args.seed)
    probe = build_model(arch, dataset_info(data).num_classes, args.arch_kwargs, trust_arch=True)
    output_file(args.out, need_bytes=model_bytes(probe))  # before the training, not after
    result = pretrain(arch, data, config, arch_kwargs=args.arch_kwargs, data_root=args.data_root,
                      device=resolve_device(args.device), image=image_transform(args))
    meta = result.meta
    meta.extra["test_acc"] = result.test_acc
    sha = save_or_rescue(save_checkpoint, result.model, args.out, meta)
    print(f"wrote {args.out}  ({arch} on {data}, test acc {result.test_acc:.2f}%, "
          f"sha256 {sha[:12]})")
    return 0
