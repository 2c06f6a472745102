"""A run's settings as typed, frozen values: what the engine and the scripts read, never the flags themselves.

cli.py builds them from the checked flags. A field is named after its flag, so `as_flags()`, which
is the checkpoint's saved 'args' and the output.log 'args:' line, has the keys of the `vars(args)`
that older checkpoints saved, and a resume compares saved and current key by key
(engine/trainer.read_resume_state).
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from data.config import DataConfig


@dataclass(frozen=True)
class ModelConfig:
    model: str                            # the backbone, a name of network.BACKBONES
    method: str                           # stl_frn, meta_frn or meta_proto


@dataclass(frozen=True)
class ComputeConfig:
    threads: int                          # CPU math threads
    gpu: bool                             # asked for; runtime.device decides whether this build can
    no_feature_cache: bool                # evaluate episode by episode instead of embedding each image once
    max_cache_mb: float                   # memory for the evaluation's feature maps before they spill to disk
    share_batches: bool = False           # training under paddle.distributed.launch: the ranks split each batch


@dataclass(frozen=True)
class OptimConfig:
    opt: str                              # 'sgd' (momentum 0.9, Nesterov) or 'adam'
    lr: float
    wd: float                             # L2 added to the gradient, as torch.optim's weight_decay
    gamma: float                          # the rate's factor at each milestone
    milestones: Tuple[int, ...]           # epochs where the rate decays, stepped per epoch
    epoch: int                            # number of epochs


@dataclass(frozen=True)
class BatchConfig:
    """What one training step sees: a batch of images (pretraining) or an episode (meta-training)."""
    train_n_way: int                      # classes per training episode (pretraining accepts and ignores it)
    batch_size: Optional[int] = None      # pretraining: images per global batch
    num_classes: Optional[int] = None     # pretraining: classes of the head (the data's count wins)
    episodes: Optional[str] = None        # meta-training: 'random' or 'pass' (the official sampler)
    train_n_episode: Optional[int] = None  # meta-training, 'random': episodes per epoch


@dataclass(frozen=True)
class ValConfig:
    val: str                              # 'meta': episodes of the val split, the best kept; 'last': none
    val_n_way: int
    val_n_episode: int
    val_n_query: int
    val_freq: int                         # after epochs N, 2N, ... and the last


@dataclass(frozen=True)
class RunConfig:
    checkpoint_dir: str                   # root of the run folders
    resume: Optional[str]                 # a checkpoint, 'auto', or None for a fresh run
    overwrite: bool                       # a fresh run may replace an earlier run's checkpoints
    save_freq: int                        # keep <epoch>.pdparams every this many epochs
    print_freq: int                       # log the loss every this many batches
    visualdl: bool
    pretrain_path: Optional[str] = None   # meta-training: the weights to start from


@dataclass(frozen=True)
class TestEpisodesConfig:
    model_path: str
    test_n_way: int
    test_task_nums: int                   # tasks: independent sets of episodes
    test_n_episode: int                   # episodes per task
    results_dir: str
    preprocess: str                       # 'model': the checkpoint's preprocess.json; 'data': the test data's
    classifier: str                       # 'frn', or 'proto': nearest class mean on the same backbone


class _Sections:
    def as_flags(self):
        """Every setting by its flag's name, as plain values (lists, not tuples): the saved arguments."""
        flat = {}
        for section in dataclasses.fields(self):
            values = getattr(self, section.name)
            for f in dataclasses.fields(values):
                if f.metadata.get('flag', True):
                    value = getattr(values, f.name)
                    flat[f.name] = list(value) if isinstance(value, tuple) else value
        return flat


@dataclass(frozen=True)
class TrainConfig(_Sections):
    """pretrain.py (method stl_frn) and meta_train.py (meta_frn, meta_proto)."""
    data: DataConfig
    model: ModelConfig
    batches: BatchConfig
    optim: OptimConfig
    val: ValConfig
    run: RunConfig
    compute: ComputeConfig

    @property
    def pretraining(self):
        return self.model.method == 'stl_frn'

    def run_dir(self):
        """<checkpoint_dir>/<dataset>/<model>_<method>_pretrain or ..._<way>way_<shot>shot_metatrain."""
        name = (f'{self.model.model}_{self.model.method}_pretrain' if self.pretraining else
                f'{self.model.model}_{self.model.method}_{self.batches.train_n_way}way_{self.data.n_shot}shot_metatrain')
        return os.path.join(self.run.checkpoint_dir, self.data.dataset, name)

    def train_way(self):
        """How many classes each training prediction chooses among: all the base classes (pretraining) or the
        episode's way."""
        return self.batches.num_classes if self.pretraining else self.batches.train_n_way

    def accuracy_notes(self):
        """(train, val): what the logged accuracies are over, with chance, for people reading output.log."""
        way = self.train_way()
        train = (f'over all {way} training classes' if self.pretraining else
                 f'on {way}-way {self.data.n_shot}-shot training episodes')
        val_way = self.val.val_n_way
        return (f'% {train}, chance {100 / way:.2f}' if way else f'% {train}',
                f'% on {val_way}-way {self.data.n_shot}-shot val episodes, chance {100 / val_way:.2f}')

    def val_episode(self):
        """(way, shot, query) of the validation episodes."""
        return self.val.val_n_way, self.data.n_shot, self.val.val_n_query

    def with_num_classes(self, num_classes):
        """The same settings with the head's class count of the data (pretraining)."""
        return dataclasses.replace(self, batches=dataclasses.replace(self.batches, num_classes=num_classes))


@dataclass(frozen=True)
class TestConfig(_Sections):
    """test.py."""
    data: DataConfig
    model: ModelConfig
    test: TestEpisodesConfig
    compute: ComputeConfig
