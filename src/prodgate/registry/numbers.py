"""Version numbers: 1, 2, 3, ... per service (kept apart: the CLI checks them without
importing the store)."""

#: The largest version number (the store keeps them as 32-bit integers).
MAX_VERSION = 2**31 - 1
