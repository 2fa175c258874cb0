from __future__ import annotations

from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """The local exchange simulator (``runsim``, ``simaccounts``): installed in development,
    the demo and the tests (``OPTIONSITE_SIMULATOR``), never by production's defaults."""

    name = "brokers.simulator"
    label = "simulator"
    verbose_name = "Exchange simulator"
