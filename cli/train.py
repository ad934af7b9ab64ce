"""``landscape train``: train an ensemble into a run directory (resumable).

Methods: local-de (K fine-tunes of one checkpoint), global-de (one fine-tune per pre-trained
checkpoint), sse (sequential cycles, each from the previous snapshot) and starsse (every cycle
from the first fine-tuned member). The run directory holds manifest.json, member-<i>.safetensors
and member-<i>.test-probs.npy; rerun the same command to continue an interrupted run.
"""

from __future__ import annotations

import argparse

from cli.common import add_data, add_device, fetch_data, finite_float, positive_int, process_group

EXAMPLES = """examples:
  landscape train --method local-de --pretrained pre.safetensors --members 5 --epochs 10 --lr 0.02 --out runs/local-de
  landscape train --method starsse --pretrained pre.safetensors --preset mnist1d --out runs/starsse
  landscape train --method sse --pretrained pre.safetensors --members 5 --epochs 10 --lr 0.02 \\
      --cycle-epochs 5 --cycle-lr 0.2 --out runs/sse-semilocal
  torchrun --nproc-per-node 2 -m cli train --method local-de --pretrained pre.safetensors --out runs/ld
  landscape train --method global-de --pretrained p1.safetensors p2.safetensors p3.safetensors \\
      --members 3 --epochs 10 --lr 0.02 --out runs/global-de
"""

DEFAULTS = {"data": "mnist1d", "members": 5, "epochs": 10, "lr": 0.02, "wd": 5e-4,
            "batch_size": 128, "cycle_epochs": None, "cycle_lr": None, "optimizer": "sgd",
            "warmup_epochs": 0, "label_smoothing": 0.0, "mixup": 0.0, "cutmix": 0.0,
            "grad_clip": None, "amp": False}


def add_recipe(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("recipe (the transformer presets set these)")
    g.add_argument("--optimizer", default=None, help="sgd (momentum 0.9, default) or adamw")
    g.add_argument("--warmup-epochs", type=int, default=None,
                   help="linear warm-up epochs before the cosine (fine-tunes only)")
    g.add_argument("--label-smoothing", type=finite_float, default=None)
    g.add_argument("--mixup", type=finite_float, default=None, help="mixup Beta alpha (0: off)")
    g.add_argument("--cutmix", type=finite_float, default=None, help="cutmix Beta alpha (0: off)")
    g.add_argument("--grad-clip", type=finite_float, default=None, help="max gradient norm")
    g.add_argument("--amp", action="store_const", const=True, default=None,
                   help="mixed precision (fp16 + grad scaler on GPU, bf16 on CPU)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an ensemble (local-de, global-de, sse, starsse)",
                       description=__doc__, epilog=EXAMPLES)
    p.add_argument("--method", required=True, help="local-de, global-de, sse or starsse")
    p.add_argument("--pretrained", nargs="+", required=True,
                   help="pre-trained checkpoint (global-de: one per member)")
    p.add_argument("--preset", default=None,
                   help="settings from a preset (mnist1d, byol-resnet50-cifar100, "
                        "supervised-resnet50-cifar100, swin-t-cifar100, or a .toml path); "
                        "flags override it")
    add_data(p, default=None)
    p.add_argument("--members", type=positive_int, default=None, help="ensemble size K (5)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs E of a fine-tune / SSE's first member (10)")
    p.add_argument("--lr", type=finite_float, default=None, help="peak learning rate (0.02)")
    p.add_argument("--wd", type=finite_float, default=None, help="weight decay (5e-4)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch size (128)")
    p.add_argument("--cycle-epochs", type=positive_int, default=None,
                   help="SSE/StarSSE: epochs F of each later cycle")
    p.add_argument("--cycle-lr", type=finite_float, default=None,
                   help="SSE/StarSSE: learning rate at the start of each later cycle")
    p.add_argument("--seed", type=int, default=0, help="member i uses seed + i - 1 (default 0)")
    add_recipe(p)
    g = p.add_argument_group("plain .pt/.pth pre-trained state dicts (no metadata)")
    g.add_argument("--arch", default=None, help="architecture, e.g. timm:resnet50")
    g.add_argument("--num-classes", type=positive_int, default=None,
                   help="classes of the pre-trained head (e.g. 1000)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run directory trained with another configuration")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(p)
    p.set_defaults(run=run)


def settings(args: argparse.Namespace) -> dict:
    """Defaults, then the preset, then explicit flags."""
    from ensembles.presets import load_preset

    merged = dict(DEFAULTS)
    if args.preset:
        merged.update(load_preset(args.preset))
    merged.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None})
    if args.method == "global-de" and args.members is None:
        merged["members"] = len(args.pretrained)
    return merged


def run(args: argparse.Namespace) -> int:
    from ensembles.run import RunConfig, train

    s = settings(args)
    config = RunConfig(method=args.method, pretrained=tuple(args.pretrained), seed=args.seed,
                       pretrained_arch=args.arch, pretrained_num_classes=args.num_classes, **s)
    with process_group(args.device) as (group, device):
        if group.is_main:
            fetch_data(args, s["data"])
        group.barrier()
        result = train(config, args.out, data_root=args.data_root, device=device,
                       overwrite=args.overwrite, group=group)
    if not group.is_main:
        return 0
    for m in result.members:
        print(f"member {m['index']}: from {m['start']}, {m['epochs']} epochs at lr {m['lr']:g}, "
              f"test acc {m['test_acc']:.2f}%")
    print(f"wrote {args.out}/manifest.json and {len(result.members)} members")
    return 0
