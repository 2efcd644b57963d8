"""Workflows shared by both models (:mod:`mtl_report.workflows.fit`)."""
