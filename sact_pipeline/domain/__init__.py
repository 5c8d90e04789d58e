"""The pure domain core: parsing, validation, pseudonymisation, counting and disclosure control.

Nothing in this package imports Dagster or touches a database, so it can be tested directly.
"""
