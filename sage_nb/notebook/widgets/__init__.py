"""Live views of a running environment, for notebooks: the execution graph, the services'
request/response traffic and job progress. Needs ipywidgets (``pip install "sage_nb[notebook]"``).
"""

from __future__ import annotations

from ...runtime.views import register_view
from .publisher import Publisher, publisher
from .views import GraphView, LiveView, MonitorView, ProgressView

# env.graph() and job.graph() ask for this (the runtime never imports the notebook layer).
register_view("graph", GraphView)

__all__ = ["GraphView", "LiveView", "MonitorView", "ProgressView", "Publisher", "publisher"]
