"""Shared pieces of the HTTP edge: base schemas, pagination, the error shape, OpenAPI."""
