"""Paid media providers (images; later video and speech), each behind a small port."""
