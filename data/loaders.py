"""The splits and loaders a run's DataConfig (data/config.py) describes: what the scripts read and feed."""
from utils import FRNError


def read_splits(data, *splits):
    """The named splits of data.data_path; with data.cache_dir, served from the image cache (built on first use)."""
    if data.dataset == 'omniglot':
        from data.omniglot import read_omniglot
        if data.cache_dir:
            print('note: Omniglot is decoded into memory already; --cache_dir is not used')
        return [read_omniglot(data.data_path, split, scheme=data.omniglot_split) for split in splits]
    from data.filelist import read_split
    lists = [read_split(data.data_path, split) for split in splits]
    if data.cache_dir:
        from data.image_cache import open_cache
        lists = [open_cache(split_list, data.cache_dir, split, data.image_size, num_workers=data.num_workers)
                 for split_list, split in zip(lists, splits)]
    return lists


def episode_loader(data, split, n_way, n_episode, aug=False, rank=0, world_size=1, flag=None, n_query=None,
                   episodes='random'):
    """Episodes of `n_way`-way data.n_shot-shot `n_query`-query (default data.n_query) from `split`.

    With `world_size` ranks, each rank gets its own share of the episodes.
    flag: the n-way flag, e.g. 'val_n_way'; it names the split, for the error when the split is too small.
    episodes: 'random' (n_episode episodes per epoch) or 'pass' (the official training sampler).
    """
    from data.datamgr import SetDataManager
    if flag and n_way > split.n_classes:
        raise FRNError(f'--{flag} {n_way} asks for {n_way}-way episodes of the {flag.split("_")[0]} split, which has '
                       f'only {split.n_classes} classes ({split.source}); lower --{flag} to {split.n_classes} or less')
    return SetDataManager(data.image_size, n_way, data.n_shot, data.n_query if n_query is None else n_query,
                          n_episode, num_workers=data.num_workers, seed=data.seed, dataset=data.dataset, rank=rank,
                          world_size=world_size, episodes=episodes, **data.transforms()).get_data_loader(split, aug=aug)


def image_batch_loader(data, split, batch_size, rank=0, world_size=1):
    """Shuffled, augmented (image, label) batches of `split` for pretraining; `batch_size` is the global batch."""
    from data.datamgr import SimpleDataManager
    return SimpleDataManager(data.image_size, batch_size, num_workers=data.num_workers, seed=data.seed,
                             dataset=data.dataset, rank=rank, world_size=world_size,
                             **data.transforms()).get_data_loader(split, aug=True)
