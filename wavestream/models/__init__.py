"""The networks. Importing this package registers every built-in model with the registry."""
from . import enhance  # noqa: F401,E402  (registers "enhance")
