"""Bundled, self-contained examples: synthetic data, a trained model, and a spec."""
