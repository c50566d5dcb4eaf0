"""Feedback (SPEC §10): the return path of each copy, bounce and complaint intake, classification, client events."""
