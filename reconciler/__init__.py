"""reconciler: make one Linux machine run exactly what a directory of Nomad job files says."""

__version__ = "0.1.0"
