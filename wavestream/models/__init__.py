"""The networks. Importing this package registers every built-in model with the registry."""
from . import (
    codec,  # noqa: F401  (registers "codec")
    encodec,  # noqa: F401  (registers "encodec_24khz")
    enhance,  # noqa: F401  (registers "enhance")
    kws,  # noqa: F401  (registers "kws", "kws-spiking")
    separate,  # noqa: F401  (registers "separate")
)
