"""Kubernetes rendering and launcher (not built yet: see the Kubernetes issue)."""
