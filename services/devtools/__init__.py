"""Tools for development machines (tests and `forgeline bench`), never used by a running service."""
