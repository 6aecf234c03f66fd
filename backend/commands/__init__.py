"""Command-line plug-ins of ``avatar-studio`` (registered by ``backend/cli/``): the entry layer.

Each module exposes ``register(subparsers)``; heavy imports happen inside the handlers. Like the
server, a command may run a job kind in-process (``preview`` runs ``body.preview`` so that its
params are parsed exactly as a submitted job's); library packages never import ``backend.jobs``.
"""
