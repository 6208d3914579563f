"""Evaluation harness: labelled data, grading, metrics, the cached runner, reports and plots."""
