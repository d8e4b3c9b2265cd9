"""Kubernetes: the API connection, member discovery, manifests."""
