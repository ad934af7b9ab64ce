"""viz: pure renderers for landscape results (matplotlib and plotly figures, HTML pages).

Imports nothing of ours but :mod:`landscape.results` (and :mod:`landscape.rounding`).

Example:
    >>> from viz import plot_plane, save_figure, plane_figure, write_html
    >>> save_figure(plot_plane(surface), "plane.png")
    >>> write_html(plane_figure(surface), "plane.html")
"""

from viz.ensembles import plot_size_curves, plot_sweep_curves, plot_sweep_heatmap
from viz.paths import plot_barrier_matrix, plot_line_and_curve, plot_paths
from viz.plane import plot_plane, plot_surface_3d, save_figure
from viz.plane_html import plane_figure, write_html
from viz.views import log_levels

__all__ = [
    "log_levels",
    "plane_figure",
    "plot_barrier_matrix",
    "plot_line_and_curve",
    "plot_paths",
    "plot_plane",
    "plot_size_curves",
    "plot_surface_3d",
    "plot_sweep_curves",
    "plot_sweep_heatmap",
    "save_figure",
    "write_html",
]
