"""The node's HTTP site: root resource, request logging, node endpoints."""
