"""Input and output helpers: video readers and atomic file writes."""
