"""The networks, their registry, shipped weights and model cards.

Importing this package loads no model (and no torch): the registry imports the built-in model
modules (``registry.BUILTIN_MODULES``) when a model is first asked for, and `wavestream models`
lists them from ``catalog.json``.
"""
