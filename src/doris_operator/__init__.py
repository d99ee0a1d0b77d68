"""Kubernetes operator for Apache Doris."""
