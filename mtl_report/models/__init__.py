"""Model builders: the Aksoy multi-task model and the image backbone registry."""
