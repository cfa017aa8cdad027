"""Live views of a running environment, for notebooks: the execution graph, the services'
request/response traffic and job progress. Needs ipywidgets (``pip install "sage_nb[notebook]"``).
"""

from __future__ import annotations

from .publisher import Publisher, publisher
from .views import GraphView, LiveView, MonitorView, ProgressView

__all__ = ["GraphView", "LiveView", "MonitorView", "ProgressView", "Publisher", "publisher"]
