"""Evaluation: quality metrics and synthetic test characters made in code (ground truth)."""
