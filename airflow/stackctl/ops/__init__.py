"""Operations on a deployment's data: its initialisation (on every target), tenant onboarding, backup and
restore.
"""
