"""The HTTP edge: routes, authentication, and domain errors mapped to HTTP once."""
