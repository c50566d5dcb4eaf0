"""Process-level helpers with no policy in them: thread offload, sliding windows, group writer, metrics."""
