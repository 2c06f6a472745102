"""Deployment: export to a Paddle inference model, prediction on image folders, the official-weights converter."""
