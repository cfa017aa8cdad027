"""The bottom layer: what both ``api`` and ``runtime`` need, and nothing that runs.

- ``functions``: the base classes users write against (``MapFunction``, ``StopSignal``, ...)
  and ``FunctionFactory``, which turns a class, an instance or a callable into the objects a
  task calls;
- ``transformation``: ``Transformation``, one node of the logical pipeline;
- ``calls``: ``ServiceCaller``, the protocol of whatever gives code ``call_service``.

It imports nothing from sage_nb but ``errors``.
"""
