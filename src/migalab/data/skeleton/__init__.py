"""Skeleton layer: joint layouts, graphs and clip transforms."""
