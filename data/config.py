"""What a run reads and how: the data part of a run's settings (engine/config.py holds the rest)."""
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class DataConfig:
    """The dataset, the episodes' shots and the loading; fields are named after their flags (cli.py builds it)."""
    dataset: str                          # names the run folder and picks the official transforms
    data_path: str
    omniglot_split: str                   # with --dataset omniglot: 'vinyals' or 'background'
    image_size: int
    n_shot: int
    n_query: int
    train_transform_type: Optional[int]   # 0 RandomResizedCrop, 1 RandomCrop with padding; None for Omniglot
    eval_resize: Optional[str]            # 'shorter', 'square' or 'none'; None for Omniglot
    cache_dir: Optional[str]              # the pre-resized image cache (data/image_cache.py)
    num_workers: int                      # DataLoader worker processes, resolved for the device
    seed: int                             # the episodes, the augmentation, the model's initialisation
    num_workers_note: str = field(default='', metadata={'flag': False})  # why that many workers

    def transforms(self):
        """The transform choice as the data managers take it (Omniglot has its own transform)."""
        if self.dataset == 'omniglot':
            return {}
        return {'train_type': self.train_transform_type, 'eval_resize': self.eval_resize}
