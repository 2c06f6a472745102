"""Few-shot methods built on the backbones in network/."""
