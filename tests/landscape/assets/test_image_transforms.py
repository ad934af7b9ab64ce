"""Image transforms as options (issue #17, item 3): ``ImageTransform``, the loaders' ``image=``,
timm models' defaults, uint8 residency, and the identity's ``image`` entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from landscape import CheckpointMeta, GridSettings, ImageTransform, PlaneConfig, UserError, load_dataset, plane
from landscape.assets.checkpoint import Checkpoint
from landscape.assets.images import GENERIC, IMAGENET_STATS
from landscape.assets.resident import as_resident, as_tensors
from landscape.grid.prepare import image_identity, image_transform

GREY = ImageTransform(size=8, channels=1, mean=(0.5,), std=(0.25,))


def make_imagefolder(root, *, n=20, size=(8, 8), classes=3, mode="L", seed=0):
    """``root/{train,test}/c<k>/<i>.png``: noise plus a bright half (left, right, top) per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                px = rng.integers(0, 90, size=(h, w)).astype(np.int64)
                half = [np.s_[:, : w // 2], np.s_[:, w // 2:], np.s_[: h // 2, :]][c % 3]
                px[half] += 140
                img = Image.fromarray(px.astype(np.uint8), mode="L")
                (img if mode == "L" else img.convert(mode)).save(folder / f"{i}.png")
    return root


def by_hand(root, split, steps):
    """The split through torchvision's ImageFolder with a hand-written transform, as tensors."""
    return as_tensors(tv_datasets.ImageFolder(str(root / split), T.Compose(steps)))


def test_size_channels_mean_std_give_the_hand_written_transform(tmp_path):
    root = make_imagefolder(tmp_path / "imgs")
    x, y = as_tensors(load_dataset(f"imagefolder:{root}", "test", image=GREY))
    hx, hy = by_hand(root, "test", [T.Grayscale(1), T.ToTensor(), T.Normalize([0.5], [0.25])])
    assert x.shape == (60, 1, 8, 8)
    assert torch.equal(x, hx) and torch.equal(y, hy)


def test_the_default_imagefolder_transform_is_unchanged(tmp_path):
    root = make_imagefolder(tmp_path / "imgs", n=2, size=(40, 30))
    x, _ = as_tensors(load_dataset(f"imagefolder:{root}", "test"))
    hx, _ = by_hand(root, "test", [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(*IMAGENET_STATS)])
    assert x.shape[1:] == (3, 224, 224) and torch.equal(x, hx)


def test_size_0_means_no_resizing_and_sizes_that_differ_are_one_line(tmp_path):
    root = make_imagefolder(tmp_path / "imgs", n=2, size=(10, 6))
    image = ImageTransform(size=0, channels=1, mean=(0.5,), std=(0.25,))
    x, _ = as_tensors(load_dataset(f"imagefolder:{root}", "test", image=image))
    hx, _ = by_hand(root, "test", [T.Grayscale(1), T.ToTensor(), T.Normalize([0.5], [0.25])])
    assert x.shape[1:] == (1, 6, 10) and torch.equal(x, hx)
    from PIL import Image

    Image.new("L", (12, 12)).save(root / "test" / "c0" / "big.png")
    with pytest.raises(UserError, match=r"differ in shape.*--img-size"):
        as_tensors(load_dataset(f"imagefolder:{root}", "test", image=image))


@pytest.mark.parametrize("image", [GREY, ImageTransform(size=6, resize=7, channels=3, interpolation="bicubic"),
                                   ImageTransform(size=4, channels=1)])
def test_uint8_residency_decodes_bit_identically(tmp_path, image):
    root = make_imagefolder(tmp_path / "imgs", n=4)
    ds = load_dataset(f"imagefolder:{root}", "train", image=image)
    res = as_resident(ds)
    assert res.inputs.dtype == torch.uint8 and res.decode is not None
    assert torch.equal(res.decode(res.inputs), as_tensors(ds)[0])


def test_resolution_order_and_greyscale_defaults():
    # a size brings its own resize; a greyscale image takes the average of a 3-channel default
    tf = ImageTransform(size=32, channels=1).resolved(GENERIC)
    assert (tf.size, tf.resize, tf.channels, tf.interpolation) == (32, 32, 1, "bilinear")
    assert tf.mean == pytest.approx((sum(IMAGENET_STATS[0]) / 3,)) and len(tf.std) == 1
    assert ImageTransform(resize=300).resolved(GENERIC).size == 224
    assert ImageTransform(size=0).resolved(GENERIC).resize == 0
    assert ImageTransform().resolved(GENERIC) == GENERIC


@pytest.mark.parametrize("kwargs, match", [
    (dict(mean=(0.5, 0.5)), "1 or 3 finite numbers"),
    (dict(std=(0.5, 0.0, 0.5)), "std must be positive"),
    (dict(size=-1), "integer in 0..8192"),
    (dict(resize=-3), "integer in 0..8192"),
    (dict(size=100_000), "integer in 0..8192"),
    (dict(channels=2), "channels must be 1 or 3"),
    (dict(channels=1, mean=(0.5, 0.5, 0.5)), "3 value.*1 channel"),
    (dict(size=32, resize=16), "at least the size"),
    (dict(interpolation="lanczos"), "unknown interpolation"),
])
def test_bad_values_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        ImageTransform(**kwargs)


def test_a_mean_that_does_not_fit_the_channels_is_refused(tmp_path):
    root = make_imagefolder(tmp_path / "imgs", n=1)
    with pytest.raises(UserError, match=r"1 value.*3 channel"):
        load_dataset(f"imagefolder:{root}", "test", image=ImageTransform(mean=(0.5,), std=(0.25,)))


def _ckpt(model, arch, dataset, arch_kwargs=None):
    return Checkpoint(model, CheckpointMeta(arch, 3, dict(arch_kwargs or {}), dataset), None, "0" * 64)


def test_timm_defaults_come_from_the_pretrained_cfg(tmp_path):
    timm = pytest.importorskip("timm")
    from timm.data import resolve_data_config

    root = make_imagefolder(tmp_path / "imgs", n=1)
    name = f"imagefolder:{root}"
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    cfg = resolve_data_config({}, model=model)
    tf = image_transform(name, GridSettings(), [_ckpt(model, "timm:resnet10t", name)])
    assert (3, tf.size, tf.size) == cfg["input_size"]
    assert tf.resize == int(cfg["input_size"][-1] / cfg["crop_pct"])
    assert (tf.mean, tf.std, tf.interpolation) == (cfg["mean"], cfg["std"], cfg["interpolation"])
    # explicit settings win; the rest stays the model's
    tf = image_transform(name, GridSettings(image=ImageTransform(size=32)), [_ckpt(model, "timm:resnet10t", name)])
    assert (tf.size, tf.resize, tf.mean, tf.interpolation) == (32, 32, cfg["mean"], cfg["interpolation"])
    # a model of the registry on the same data: the generic ImageNet evaluation
    assert image_transform(name, GridSettings(), [_ckpt(model, "resnet20", name)]) == GENERIC
    # CIFAR fixes its own 32 px and statistics, whatever the model
    cifar = image_identity("cifar10", GridSettings(), [_ckpt(model, "timm:resnet10t", "cifar10")])
    assert (cifar["size"], cifar["resize"], cifar["channels"]) == (0, 0, 3)


def test_image_settings_for_a_dataset_without_images_are_refused(three_ckpts, tmp_path):
    with pytest.raises(UserError, match="not an image dataset"):
        plane(three_ckpts, out=tmp_path / "p.h5", config=PlaneConfig(grid=2, image=GREY))
    with pytest.raises(UserError, match="not an image dataset"):
        load_dataset("mnist1d", "test", image=GREY)
    with pytest.raises(UserError, match="ImageTransform"):
        GridSettings(image={"size": 8})


def test_a_mnist1d_plane_records_no_transform(three_ckpts, tmp_path):
    s = plane(three_ckpts, out=tmp_path / "p.h5",
              config=PlaneConfig(grid=2, test_subset=32, train_subset=32, splits=("test",), engine="loop"))
    assert "image" not in s.config["identity"]
    import h5py

    with h5py.File(tmp_path / "p.h5") as f:
        assert "image" not in f.attrs


def test_a_registered_image_dataset_gets_the_transform_and_others_keep_their_signature():
    from landscape import register_dataset
    from landscape.assets.resident import ArrayDataset

    seen = []

    def images(split, *, root=None, download=False, train_transform=False, image=None):
        seen.append(image)
        return ArrayDataset(torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long))

    def plain(split, *, root=None, download=False, train_transform=False):  # the documented signature
        return ArrayDataset(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))

    own = ImageTransform(size=0, mean=(0.5,), std=(0.5,), channels=1, interpolation="bilinear")
    register_dataset("toyimg", images, num_classes=2, image=own)
    register_dataset("toyplain", plain, num_classes=2)
    load_dataset("toyimg", "test")
    load_dataset("toyimg", "test", image=ImageTransform(size=2))
    assert seen == [None, ImageTransform(size=2)]
    assert len(load_dataset("toyplain", "test")) == 4
    ckpt = _ckpt(torch.nn.Linear(3, 2), "resnet20", "toyplain")
    assert image_identity("toyplain", GridSettings(), [ckpt]) is None
    assert image_identity("toyimg", GridSettings(image=ImageTransform(std=(0.25,))), [ckpt])["std"] == [0.25]
