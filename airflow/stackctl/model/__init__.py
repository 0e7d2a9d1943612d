"""The deployment model: config.yaml, every process of the product, and the facts the renderers read.

Imports no other stackctl package: the renderers, the native runtime and the operations read it.
"""
