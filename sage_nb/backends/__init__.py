"""Backends: other places to run services and operators than threads of this process.

A backend plugs into the runtime through its two task factories: a ``ServiceTaskFactory``
(``runtime/dispatcher.py``) that deploys each service, and an ``OperatorTaskFactory``
(``runtime/job_manager.py``) that runs each parallel instance of a pipeline region. Importing a
backend package imports nothing heavy; its dependencies load when an environment is created.

- ``sage_nb.backends.ray``: ``RemoteEnvironment``, services and parallel operators on Ray actors.
"""
