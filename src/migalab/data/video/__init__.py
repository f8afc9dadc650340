"""RGB video: readers (decord, PyAV), an mp4 writer, clip transforms and the prepared-clip cache."""
