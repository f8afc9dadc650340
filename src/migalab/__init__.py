"""migalab: micro-gesture recognition and behaviour-based emotion prediction on iMiGUE / MiGA."""

__version__ = "0.1.0"
