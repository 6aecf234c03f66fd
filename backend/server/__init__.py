"""The job server: ROUTER loop (:mod:`.app`), job store, artifact store, worker executor, CURVE auth.

Never imports torch: job modules are imported lazily inside the worker processes.
"""
