"""Renderers: the deployment model written out for a target (compose, ansible, Prometheus, Alertmanager,
the listeners' web configs, the README's tables). They read the model and import nothing that runs.
"""
