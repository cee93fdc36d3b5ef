"""Extractors: small named, versioned classes that turn a decoded image into a sidecar."""
