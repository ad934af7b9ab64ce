"""``landscape pretrain``: train a model from scratch (the source of transfer)."""

from __future__ import annotations

import argparse

from cli.common import add_data, add_device, fetch_data, finite_float, json_dict, positive_int

EXAMPLES = """examples:
  landscape pretrain --data mnist1d-source --arch mnist1d_cnn --epochs 6 --seed 0 --out pre.safetensors
  landscape pretrain --data cifar10 --data-root ~/data --arch resnet20 --epochs 100 --lr 0.1 --out r20.safetensors
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from ensembles import TrainConfig, pretrain
    from landscape import dataset_info, resolve_device, save_checkpoint

    arch = args.arch or dataset_info(args.data).default_arch
    config = TrainConfig(epochs=args.epochs, lr=args.lr, wd=args.wd,
                         batch_size=args.batch_size, seed=args.seed)
    result = pretrain(arch, args.data, config, arch_kwargs=args.arch_kwargs,
                      data_root=args.data_root, device=resolve_device(args.device))
    meta = result.meta
    meta.extra["test_acc"] = result.test_acc
    sha = save_checkpoint(result.model, args.out, meta)
    print(f"wrote {args.out}  ({arch} on {args.data}, test acc {result.test_acc:.2f}%, "
          f"sha256 {sha[:12]})")
    return 0
