"""The pipeline core: bounded queues (``queues``), the pure stage functions (``stages``, ``postprocess``,
``overlay``), the threads that run them (``pipeline``) and the run statistics (``stats``). It sees sources and
sinks only through :mod:`polyp_live.realtime.ports`.
"""
