"""Intraday history: a minute bar per chain (``bars``, pure), stored per day (``store``), read
back for the history API (``selectors``, ``api``)."""
