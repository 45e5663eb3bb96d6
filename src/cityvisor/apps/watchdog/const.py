"""Names of the watchdog app."""

from __future__ import annotations

import logging

from cityvisor.ngsild.context import sdm_context

NAME = "watchdog"
LOG = logging.getLogger("cityvisor.watchdog")
ALERT_CONTEXT = sdm_context("Alert")
#: ``category``/``subCategory`` of its alerts; the Smart Data Models Alert enum has no category
#: for equipment faults, so ``technical`` is our extension (as ``domain``, for console filters)
CATEGORY = "technical"
SUBCATEGORY = "deviceNotResponding"
#: entities read per query page
PAGE = 500
