"""Offline stand-ins for hub models and datasets, named ``smoke:<name>`` (:mod:`trainables.offline.registry`)."""
