"""LightningModules: they own loss, metrics and optimisation; models are injected."""
