"""The local on-call inbox: Alertmanager's webhook receiver, recording every notification it gets."""
