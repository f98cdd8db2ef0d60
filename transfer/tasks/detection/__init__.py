"""Object detection: boxes and their classes."""
