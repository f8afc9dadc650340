"""Small shared helpers: paths, atomic file writes, scheduling, run summaries."""
