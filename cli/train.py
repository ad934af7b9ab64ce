"""``landscape train``: train an ensemble into a run directory (resumable).

Methods: local-de (K fine-tunes of one checkpoint), global-de (one fine-tune per pre-trained
checkpoint), sse (sequential cycles, each from the previous snapshot) and starsse (every cycle
from the first fine-tuned member). The other local methods start from member 1 (a fine-tune of
--pretrained, or the fine-tuned --init checkpoint) and make members 2..K: fge (Garipov et al.
2018: snapshots at the minima of a per-iteration triangular LR), csgld (Zhang et al. 2020: one
cyclical-SGLD sample per cycle), swag (Maddox et al. 2019: samples of the SWA Gaussian), kfac-laplace
(Ritter et al. 2018: samples of a Kronecker-factored Laplace posterior) and spro (Benton et al.
2021: uniform samples of a low-loss simplex). Sampled members get BN statistics recomputed.
These five run on one process (not under torchrun); csgld and spro refuse --optimizer, --amp,
--label-smoothing, --mixup, --cutmix and --grad-clip (they take their own plain SGD steps).
The run directory holds manifest.json, member-<i>.safetensors and member-<i>.test-probs.npy;
rerun the same command to continue an interrupted run.
"""

from __future__ import annotations

import argparse

from cli.common import (
    add_arch_for_pt,
    add_data,
    add_device,
    fetch_data,
    finite_float,
    positive_int,
    process_group,
    seed_int,
)
from cli.grid_flags import add_image_flags, image_settings
from cli.outputs import writable_dir

EXAMPLES = """examples:
  landscape train --method local-de --pretrained pre.safetensors --members 5 --epochs 10 --lr 0.02 --out runs/local-de
  landscape train --method starsse --pretrained pre.safetensors --preset mnist1d --out runs/starsse
  landscape train --method sse --pretrained pre.safetensors --members 5 --epochs 10 --lr 0.02 \\
      --cycle-epochs 5 --cycle-lr 0.7 --out runs/sse-semilocal
  torchrun --nproc-per-node 2 -m cli train --method local-de --pretrained pre.safetensors --out runs/ld
  landscape train --method global-de --pretrained p1.safetensors p2.safetensors p3.safetensors \\
      --members 3 --epochs 10 --lr 0.02 --out runs/global-de
  landscape train --method fge --pretrained pre.safetensors --preset mnist1d --cycle-epochs 2 --cycle-lr 0.04 \\
      --fge-min-lr 0.0004 --out runs/fge
  landscape train --method csgld --pretrained pre.safetensors --preset mnist1d --csgld-temperature 1 \\
      --csgld-exploration 0.8 --out runs/csgld
  landscape train --method swag --init runs/fge/member-1.safetensors --preset mnist1d --cycle-epochs 5 \\
      --cycle-lr 0.04 --swag-rank 20 --sample-scale 0.5 --out runs/swag
  landscape train --method kfac-laplace --pretrained pre.safetensors --preset mnist1d \\
      --laplace-prior-precision 20 --out runs/kfac-laplace
  landscape train --method spro --pretrained pre.safetensors --preset mnist1d --spro-vertices 3 \\
      --spro-volume-reg 0.01 --out runs/spro
  landscape train --method local-de --pretrained lightning.ckpt --arch nets/tiny.py:TinyCNN \\
      --num-classes 10 --strip-prefix model. --data nets/data.py:splits --members 3 --out runs/mine
  landscape train --method local-de --pretrained r18.pth --arch timm:resnet18 --num-classes 1000 \\
      --data imagefolder:data/flowers --img-size 128 --members 3 --out runs/flowers
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


def add_local_methods(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fge, csgld, swag, kfac-laplace, spro (README: 'Other local methods')")
    g.add_argument("--init", default=None,
                   help="a fine-tuned checkpoint used as member 1 (skips its fine-tune)")
    g.add_argument("--fge-min-lr", type=finite_float, default=None,
                   help="fge: LR alpha_2 at the middle of each cycle; swag --swag-schedule cyclic: "
                        "LR at the end of each interval (default --cycle-lr / 100)")
    g.add_argument("--csgld-temperature", type=finite_float, default=None,
                   help="csgld: temperature T of the noise sqrt(2 lr T / N) (default 1)")
    g.add_argument("--csgld-exploration", type=finite_float, default=None,
                   help="csgld: fraction beta of each cycle run as plain SGD (default 0.8)")
    g.add_argument("--swag-rank", type=positive_int, default=None,
                   help="swag: columns of the deviation matrix (default 20)")
    g.add_argument("--swag-collect", type=positive_int, default=None,
                   help="swag: weight collections per epoch, evenly spaced, the last at its end "
                        "(default 1; at most the batches per epoch)")
    g.add_argument("--swag-schedule", default=None, help="swag: constant (default) or cyclic SWA LR")
    g.add_argument("--sample-scale", type=finite_float, default=None,
                   help="swag, kfac-laplace: covariance scale s, samples drawn with s x the fitted "
                        "covariance (std x sqrt(s)); default 0.5 for swag (the paper's), 1 for "
                        "kfac-laplace (the Laplace posterior)")
    g.add_argument("--laplace-prior-precision", type=finite_float, default=None,
                   help="kfac-laplace: prior precision tau (default N * wd)")
    g.add_argument("--spro-vertices", type=positive_int, default=None,
                   help="spro: vertices of the simplex, member 1 included (default 3)")
    g.add_argument("--spro-volume-reg", type=finite_float, default=None,
                   help="spro: weight lambda of -log(volume) in the loss (default 0.01)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an ensemble (local-de, global-de, sse, starsse, fge, "
                       "csgld, swag, kfac-laplace, spro)", description=__doc__, epilog=EXAMPLES)
    p.add_argument("--method", required=True, help="local-de, global-de, sse, starsse, fge, csgld, "
                   "swag, kfac-laplace or spro")
    p.add_argument("--pretrained", nargs="+", default=(),
                   help="pre-trained checkpoint (global-de: one per member)")
    p.add_argument("--preset", default=None,
                   help="settings from a preset (mnist1d, byol-resnet50-cifar100, "
                        "supervised-resnet50-cifar100, swin-t-cifar100, or a .toml path); "
                        "flags override it")
    add_data(p, default=None, unset="the preset's, else mnist1d")
    p.add_argument("--members", type=positive_int, default=None, help="ensemble size K (5)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs E of a fine-tune / SSE's first member (10)")
    p.add_argument("--lr", type=finite_float, default=None, help="peak learning rate (0.02)")
    p.add_argument("--wd", type=finite_float, default=None, help="weight decay (5e-4)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch size (128)")
    p.add_argument("--cycle-epochs", type=positive_int, default=None,
                   help="SSE/StarSSE: epochs F of each later cycle; fge/csgld: cycle length; "
                        "swag: collection epochs; spro: epochs per new vertex")
    p.add_argument("--cycle-lr", type=finite_float, default=None,
                   help="SSE/StarSSE: learning rate at the start of each later cycle; fge: peak LR "
                        "alpha_1; csgld: alpha_0; swag: SWA LR; spro: LR of the new vertices")
    p.add_argument("--seed", type=seed_int, default=0, help="member i uses seed + i - 1 (default 0)")
    add_recipe(p)
    add_local_methods(p)
    add_image_flags(p)
    add_arch_for_pt(p)
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


def method_options(args: argparse.Namespace) -> dict:
    """The methods' options given as flags (those left unset take the method's defaults)."""
    from ensembles.methods import METHODS, option_defaults

    return {k: getattr(args, k) for k in option_defaults(METHODS) if getattr(args, k) is not None}


def run(args: argparse.Namespace) -> int:
    from ensembles.config import RunConfig
    from ensembles.run import train
    from ensembles.rundir import RunDir

    s = settings(args)
    config = RunConfig.from_flat(args.method, tuple(args.pretrained), seed=args.seed,
                                 pretrained_arch=args.arch, pretrained_num_classes=args.num_classes,
                                 pretrained_arch_kwargs=args.arch_kwargs,
                                 pretrained_state_dict_key=args.state_dict_key,
                                 pretrained_strip_prefix=args.strip_prefix, image=image_settings(args),
                                 **method_options(args), **s)
    with process_group(args.device) as (group, device):
        if group.is_main:
            writable_dir(args.out)  # before any training
            fetch_data(args, s["data"])
        group.barrier()
        result = train(config, args.out, data_root=args.data_root, device=device,
                       overwrite=args.overwrite, group=group)
    if not group.is_main:
        return 0
    for m in result.members:
        lr = f" at lr {m['lr']:g}" if m.get("lr") is not None else ""
        acc = "nan" if m.get("test_acc") is None else f"{m['test_acc']:.2f}"  # a NaN is recorded as null
        print(f"member {m['index']}: from {m['start']}, {m['epochs']} epochs{lr}, test acc {acc}%")
    manifest = RunDir(args.out).manifest_path.name
    print(f"wrote {args.out}/{manifest} and {len(result.members)} members")
    return 0
