"""Flood early warning for the cadereaux of Nîmes.

So far only the science core exists: the GR4H hourly rainfall-runoff model and forecast scores
(:mod:`cityvisor.apps.flood.algorithms`) and its calibration
(:mod:`cityvisor.apps.flood.calibration`). See ``README.md`` in this folder and
``docs/flood-models.md``.
"""
