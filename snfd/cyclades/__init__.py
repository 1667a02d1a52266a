"""Compute, network, image and volume services over Ganeti (Cyclades).
Not built yet."""
