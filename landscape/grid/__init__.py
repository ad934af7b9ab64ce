"""The shared base of grid evaluations (planes and paths; docs/architecture.md, "Layers").

- ``settings``: ``GridSettings``, the fields planes and paths share (one validator, one set of
  defaults), and which of them are the file's identity.
- ``prepare``: the checks and preparation before the first point (checkpoints, weight vectors,
  evaluation data, the evaluator, the runtime record).
- ``identity``: a result file's typed identity (``Identity``, ``CheckpointRef``).
- ``record``: the typed engine record of ``runtime.engine`` (``EngineRecord``).
- ``driver``: ``evaluate_grid``: settings chosen, missing points evaluated in groups, written as
  they finish, shared among processes under torchrun.
- ``parts``, ``store``, ``journal``, ``reading``, ``lock``, ``distributed``: part files, the HDF5
  store, its journal and recovery copy, the readers, the writer lock, process groups.
"""
