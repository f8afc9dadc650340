"""Data layer: file formats, skeleton layouts and transforms, synthetic iMiGUE, datasets."""
