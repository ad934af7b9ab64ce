"""What users ask for (docs/architecture.md, "Layers"): planes (``planes``) and linear paths
(``paths``) in weight space, their geometry (``geometry``), barriers and basin labels
(``barriers``, ``basins``), and the naive per-point reference loop (``reference``)."""
