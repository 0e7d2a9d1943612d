"""stackctl: renders the control plane's one configuration source and runs the native stack."""
