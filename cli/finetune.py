"""``landscape finetune``: fine-tune all layers of a pre-trained checkpoint with a fresh head."""

from __future__ import annotations

import argparse

from cli.common import (
    add_arch_for_pt,
    add_data,
    add_device,
    fetch_data,
    finite_float,
    load_kwargs,
    positive_int,
    seed_int,
)
from cli.grid_flags import add_image_flags, image_transform
from cli.outputs import model_bytes, output_file
from landscape.atomic import save_or_rescue

EXAMPLES = """examples:
  landscape finetune pre.safetensors --data mnist1d --epochs 10 --lr 0.02 --seed 1 --out m1.safetensors
  landscape finetune byol_r50.pth --arch timm:resnet50 --num-classes 1000 \\
      --data cifar100 --data-root ~/data --epochs 25 --lr 0.05 --wd 1e-4 --out m1.safetensors
  landscape finetune r18.pth --arch timm:resnet18 --num-classes 1000 --data imagefolder:data/flowers \
      --img-size 128 --out flowers.safetensors     # timm's own transform unless --img-size/--mean/--std
  landscape finetune model.ckpt --arch nets/tiny.py:TinyCNN --num-classes 10 --data nets/data.py:splits \
      --out mine.safetensors
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pre-trained checkpoint (new seeded head)",
                       description=__doc__ + "\nSGD with momentum 0.9, cross-entropy and a "
                       "per-epoch cosine schedule: epoch k of E uses lr*0.5*(1+cos(pi*(k-1)/E)).",
                       epilog=EXAMPLES)
    p.add_argument("pretrained", help="pre-trained checkpoint (.safetensors, or .pt with --arch)")
    add_data(p, default="mnist1d")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--lr", type=finite_float, default=0.02, help="peak learning rate (cosine)")
    p.add_argument("--wd", type=finite_float, default=5e-4, help="weight decay")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--seed", type=seed_int, default=0, help="seeds the new head and the data order")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(p)
    add_image_flags(p)
    add_arch_for_pt(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fetch_data(args, args.data)
    from ensembles import TrainConfig, finetune
    from landscape import load_checkpoint, resolve_device, save_checkpoint

    kwargs = load_kwargs(args)
    kwargs["dataset"] = None  # the pre-trained model's dataset is its source, not --data
    pre = load_checkpoint(args.pretrained, **kwargs)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, wd=args.wd,
                         batch_size=args.batch_size, seed=args.seed)
    output_file(args.out, need_bytes=model_bytes(pre.model))  # before the training, not after
    result = finetune(pre, args.data, config, data_root=args.data_root,
                      device=resolve_device(args.device), image=image_transform(args))
    result.meta.extra["test_acc"] = result.test_acc
    sha = save_or_rescue(save_checkpoint, result.model, args.out, result.meta)
    print(f"wrote {args.out}  (fine-tuned on {args.data}, test acc {result.test_acc:.2f}%, "
          f"sha256 {sha[:12]})")
    return 0
