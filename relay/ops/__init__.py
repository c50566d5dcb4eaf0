"""Operating the relay (SPEC §12): structured logs, the admin listener, host-wide metrics, the worker supervisor, reload."""
