"""The demo's basin geometry (#21), from source 0's SSE and StarSSE runs at the local and the
semi-local rate: the sharpness of every member, per-block distances from the pre-trained
checkpoint and between members, a simplex of three semi-local SSE members, and the PCA plane of
the semi-local SSE members. Each part is skipped when its file exists."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ensembles.demo.config import DemoConfig, flat, run_path
from ensembles.manifest import read_run
from landscape.atomic import write_json
from landscape.surfaces.distances import layer_distances
from landscape.surfaces.planes import PlaneConfig, plane
from landscape.surfaces.sharpness import SharpnessConfig, measure_sharpness
from landscape.surfaces.simplex import simplex

GEOMETRY_ROLES = ("sse-local", "sse-semilocal", "starsse-local", "starsse-semilocal")
SHARPNESS = SharpnessConfig(top=2, iterations=15, trace_samples=20, subset=500)


def geometry(out: Path, roles: dict[str, list[str]], config: DemoConfig, device, log) -> None:
    """Every part of the geometry step into ``out/geometry`` (and ``out/planes/pca``)."""
    target = out / "geometry"
    runs = {role: roles[role][0] for role in GEOMETRY_ROLES}
    source = out / "sources" / f"{runs['sse-local'].split('/')[0]}.safetensors"
    known: dict[str, object] = {}  # by sha256: member 1 is the same fine-tune in every run, measured once
    for role, run in runs.items():
        files = _members(out, run)
        path = target / f"sharpness-{flat(run)}.json"
        if not path.exists():
            log(f"sharpness of {run}")
            measured = measure_sharpness(files, config=SHARPNESS, device=device, skip=lambda name, sha: known.get(sha),
                                         on_result=lambda name, sha, result: known.setdefault(sha, result))
            write_json(path, {"run": run, "role": role, "settings": asdict(SHARPNESS),
                              "members": {name: asdict(s) for name, s in measured}}, indent=2, strict=True)
        path = target / f"distances-{flat(run)}.json"
        if not path.exists():
            report = layer_distances(files, pretrained=[source])
            write_json(path, {"run": run, "role": role, **asdict(report)}, indent=2, strict=True)
    semi = _members(out, runs["sse-semilocal"])
    if not (target / "simplex.h5").exists():
        log("simplex of three semi-local SSE members")
    simplex(semi[:3], out=target / "simplex.h5", device=device,
            config=PlaneConfig(grid=config.grid, train_subset=config.plane_train_subset))
    if not (out / "planes" / "pca" / "plane.h5").exists():
        log("PCA plane of the semi-local SSE members")
    plane(semi, out=out / "planes" / "pca" / "plane.h5", device=device, pca=True,
          config=PlaneConfig(grid=config.grid, train_subset=config.plane_train_subset))


def _members(out: Path, run: str) -> list[Path]:
    members = read_run(run_path(out, run))
    return [members.checkpoint_path(m["index"]) for m in members.members]

