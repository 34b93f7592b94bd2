"""Data installed with the application: default settings and built-in algorithm packages."""
