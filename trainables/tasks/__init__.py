"""Task modules: one per task family, looked up by name in :mod:`trainables.tasks.registry`."""
