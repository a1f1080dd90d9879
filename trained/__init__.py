"""Shipped model weights (safetensors + JSON manifests); provenance and licences in README.md here."""
