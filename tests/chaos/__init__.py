"""Chaos tests: the whole product on a private Redis, through the faults of a trading day."""
