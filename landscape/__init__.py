"""landscape: loss landscapes of ensembles fine-tuned from a pre-trained checkpoint.

The engine: checkpoints, model and dataset registries, parameter-space geometry, the batched
grid evaluator, BatchNorm policies, planes and the HDF5 store. It knows nothing of training,
plotting or argument parsing.

Example:
    >>> import landscape
    >>> ckpt = landscape.load_checkpoint("runs/demo/runs/local-de/member-1.safetensors")
    >>> surface = landscape.plane(["a.safetensors", "b.safetensors", "c.safetensors"],
    ...                           out="runs/plane/plane.h5")
    >>> landscape.read_surface("runs/plane/plane.h5").loss("test")
"""

from landscape.surfaces.barriers import DEFAULT_THRESHOLD_PP, Barrier, barrier, same_basin
from landscape.assets.userdata import Data
from landscape.assets.checkpoint import Checkpoint, CheckpointMeta
from landscape.assets.modules import as_checkpoint, load_checkpoint, save_checkpoint, trust_arch
from landscape.assets.datasets import dataset_info, dataset_names, load_dataset, register_dataset
from landscape.assets.images import ImageTransform
from landscape.device import resolve_device
from landscape.errors import UserError
from landscape.assets.models import create_model, model_names, register_model
from landscape.surfaces.basins import PairReport, path_report
from landscape.surfaces.paths import PathConfig, interpolate, make_pairs
from landscape.surfaces.curves import Curve, CurveReport, curve_report, evaluate_curve, make_curve
from landscape.surfaces.curve_files import load_curve, save_curve
from landscape.surfaces.planes import PlaneConfig, plane
from landscape.grid.settings import GridSettings
from landscape.results import PathSet, PointInfo, Surface
from landscape.grid.store import read_paths, read_surface

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_THRESHOLD_PP",
    "Barrier",
    "Curve",
    "CurveReport",
    "curve_report",
    "evaluate_curve",
    "load_curve",
    "make_curve",
    "save_curve",
    "PairReport",
    "PathConfig",
    "PathSet",
    "as_checkpoint",
    "barrier",
    "interpolate",
    "make_pairs",
    "path_report",
    "read_paths",
    "same_basin",
    "Checkpoint",
    "Data",
    "GridSettings",
    "ImageTransform",
    "CheckpointMeta",
    "PlaneConfig",
    "PointInfo",
    "Surface",
    "UserError",
    "create_model",
    "dataset_info",
    "dataset_names",
    "load_checkpoint",
    "load_dataset",
    "model_names",
    "plane",
    "read_surface",
    "register_dataset",
    "register_model",
    "resolve_device",
    "save_checkpoint",
    "trust_arch",
]
