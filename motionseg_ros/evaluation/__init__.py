"""Evaluation: metrics (DAVIS J and F), dataset loaders, direct and live runs, reports."""
