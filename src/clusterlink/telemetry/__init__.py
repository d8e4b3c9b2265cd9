"""Metrics and health endpoints shared by every long-running component."""
