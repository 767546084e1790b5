"""collector: scheduled HTTP data collection with persisted results."""

__version__ = "0.1.0"
