"""Few-shot data: split file lists, transforms, datasets, samplers and loaders."""
