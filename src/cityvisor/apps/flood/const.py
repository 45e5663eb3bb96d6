"""Names and tables of the flood app: the @contexts it speaks, what it signs its entities with,
and the tuning constants of a cycle.

A leaf module (it imports only ``cityvisor.ngsild``), so that every other module of the app,
the storm scenario included, can take its names from here without importing one another.
"""

from __future__ import annotations

import logging

from cityvisor.ngsild.context import sdm_context

__all__ = [
    "BIAS_LIMITS",
    "LIVE_PROVIDER",
    "LOG",
    "MAX_CATCH_UP_H",
    "NAME",
    "QUERY_CHUNK",
    "SDM_ALERT",
    "SDM_ENVIRONMENT",
    "SDM_WEATHER",
    "STORM_2014_LABEL",
    "TREND_FR",
]

#: the app's name: its package ``cityvisor.apps.flood``, its entry in the setting ``apps``
NAME = "flood"
LOG = logging.getLogger("cityvisor.flood")

#: Smart Data Models @contexts: rain gauges (WeatherObserved), water-level gauges and warning
#: points (FloodMonitoring), alerts (Alert)
SDM_WEATHER = sdm_context("Weather")
SDM_ENVIRONMENT = sdm_context("Environment")
SDM_ALERT = sdm_context("Alert")

#: ``dataProvider`` of what the live app writes
LIVE_PROVIDER = "cityvisor — prévision des crues"
#: ``dataProvider`` and ``source`` of everything the October 2014 storm scenario writes, and
#: of what the app writes while it runs on that scenario
STORM_2014_LABEL = "Rejeu — orage d'octobre 2014 (Cance), scénario"

#: Hours caught up with radar rain after an outage (the forecaster fills longer gaps dry).
MAX_CATCH_UP_H = 24
#: Gauges asked for per query (bounded URLs and result pages).
QUERY_CHUNK = 50
#: Range of the mean-field radar bias Σ gauge / Σ radar.
BIAS_LIMITS = (0.5, 2.0)
#: the trend as the alerts' French descriptions say it
TREND_FR = {"rising": "en hausse", "steady": "stable", "falling": "en baisse"}
