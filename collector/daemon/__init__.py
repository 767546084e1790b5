"""``collector run``: the long-running scheduler (see :mod:`collector.daemon.daemon`)."""
