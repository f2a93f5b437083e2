"""Suite-wide settings: none so far beyond setup.cfg's [tool:pytest]."""
