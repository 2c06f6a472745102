"""The training loop shared by pretrain.py and meta_train.py, with checkpoints and resume.

The scripts plug in what differs: the batch loader and `train_step(model, batch) ->
(loss, accuracy)`. Everything else is here: the optimizer (SGD with Nesterov momentum, or
Adam) and a MultiStepDecay schedule stepped per epoch, validation on episodes every
--val_freq epochs, the seed's log lines, and checkpoints written atomically. What to do
comes from the run's TrainConfig (engine/config.py), never from the flags.

Run folder files:
  best_model.pdparams      model weights of the best validation epoch (or the last, with --val last)
  last_model.pdparams      model weights after the newest epoch
  <epoch>.pdparams         model weights kept every --save_freq epochs
  *.pdopt                  beside each of the last two: everything a resume needs (model, optimizer,
                           schedule, epoch, best accuracy, RNG states), in one atomic file, written
                           after its .pdparams; an epoch writes <epoch>.* before last_model.*
  output.log               the log, for people
  metrics.jsonl            the same numbers as records, for programs (curves.png, VisualDL; engine/metrics.py)
  curves.png               loss, accuracy and learning rate per epoch, drawn when training ends
  preprocess.json          what the input must be (data/preprocess.py), written at the start

Under paddle.distributed.launch every rank trains on its share of each batch or of
each epoch's episodes, gradients are averaged (paddle.DataParallel), BatchNorm running
statistics are averaged every epoch, and the epoch's metrics are averaged over ranks.
Only rank 0 validates and writes files; the other ranks go on to the next epoch and
meet it at the first gradient exchange.
"""
import os
import random
import shutil
import time

import numpy as np
import paddle

from data.preprocess import record_for, write_sidecar
from engine.metrics import METRICS_FILE, MetricsLog, save_curves
from engine import parallel
from engine.evaluation import evaluate
from engine.feature_cache import feature_cache_for
from engine.log import progress
from engine.runlock import clear_earlier_run
from utils import FRNError, atomic_save, atomic_write, mean_confidence_interval


class TrainStep(paddle.nn.Layer):
    """`train_step(model, batch)` as a layer's forward, so paddle.DataParallel can wrap it."""

    def __init__(self, model, train_step):
        super().__init__()
        self.model, self.train_step = model, train_step

    def forward(self, batch):
        return self.train_step(self.model, batch)


class BatchTimer:
    """The TIPC speed fields of a batch log line, averaged over the batches since the last line.

    reader cost: waiting for the loader; batch cost: loader + step (forward, backward, update);
    ips: images per second of batch cost (a pretraining batch's images, an episode's way x (shot + query)).
    """

    def __init__(self):
        self.reader = self.batch = 0.0
        self.images = self.steps = 0
        self.last = time.perf_counter()

    def got_batch(self, batch):
        self.reader += time.perf_counter() - self.last
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.images += int(np.prod(images.shape[:-3]))

    def step_done(self):
        now = time.perf_counter()
        self.batch += now - self.last
        self.steps += 1
        self.last = now

    def report(self):
        steps = max(self.steps, 1)
        text = (f' | avg_reader_cost: {self.reader / steps:.5f} sec | avg_batch_cost: {self.batch / steps:.5f} sec'
                f' | avg_ips: {self.images / max(self.batch, 1e-12):.2f} images/sec')
        self.reader = self.batch = 0.0
        self.images = self.steps = 0
        return text


def build_optimizer(optim, model):
    """An OptimConfig's optimizer and schedule. sgd: torch's SGD(momentum=0.9, nesterov=True); adam: torch's
    Adam. A float weight_decay is paddle's L2Decay, added to the gradient before the update, as torch.optim
    applies weight_decay."""
    scheduler = paddle.optimizer.lr.MultiStepDecay(learning_rate=optim.lr, milestones=list(optim.milestones),
                                                   gamma=optim.gamma)
    if optim.opt == 'adam':
        optimizer = paddle.optimizer.Adam(learning_rate=scheduler, beta1=0.9, beta2=0.999, epsilon=1e-8,
                                          weight_decay=optim.wd, parameters=model.parameters())
    else:
        optimizer = paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9, use_nesterov=True,
                                              weight_decay=optim.wd, parameters=model.parameters())
    return optimizer, scheduler


def validates_after(epoch, val_freq, epochs):
    """Whether epoch `epoch` (0-based) of `epochs` ends with a validation: every `val_freq` epochs, and after
    the last."""
    return (epoch + 1) % val_freq == 0 or epoch == epochs - 1


def _accumulator_names(model):
    """Map paddle's generated parameter names (which depend on creation order) to structured names."""
    return {p.name: k for k, p in model.named_parameters()}


def optimizer_state(optimizer, model):
    """The optimizer's accumulators keyed by structured parameter names, so they load in any process."""
    names = _accumulator_names(model)
    state = {}
    for key, value in optimizer.state_dict().items():
        owner = max((n for n in names if key.startswith(n + '_')), key=len, default=None)
        state[key if owner is None else names[owner] + key[len(owner):]] = value
    return state


def load_optimizer_state(optimizer, model, state):
    inverse = {k: n for n, k in _accumulator_names(model).items()}
    renamed = {}
    for key, value in state.items():
        owner = max((k for k in inverse if key.startswith(k + '_')), key=len, default=None)
        renamed[key if owner is None else inverse[owner] + key[len(owner):]] = value
    optimizer.set_state_dict(renamed)


def save_checkpoint(path, model, optimizer, scheduler, epoch, best_acc, best_epoch, run_args):
    """`<name>.pdparams` (weights, for users), then `<name>.pdopt` (the complete resume state, with the run's
    settings `run_args`, TrainConfig.as_flags()).

    In this order a .pdopt always has its epoch's weights beside it, wherever a kill lands."""
    atomic_save(model.state_dict(), path)
    atomic_save({'model': model.state_dict(), 'optimizer': optimizer_state(optimizer, model),
                 'scheduler': scheduler.state_dict(), 'epoch': epoch, 'best_acc': best_acc,
                 'best_epoch': best_epoch, 'args': run_args,
                 'rng': {'paddle': paddle.get_rng_state(), 'numpy': np.random.get_state(),
                         'python': random.getstate()}},
                os.path.splitext(path)[0] + '.pdopt')


def read_state_file(path, fix='resume from another checkpoint of the run, or start again with --overwrite'):
    """paddle.load of a resume state, with a one-line error for a truncated or foreign file."""
    try:
        return paddle.load(path)
    except Exception as err:  # paddle raises many types for a truncated or foreign file
        raise FRNError(f'cannot read the resume state {path!r} ({type(err).__name__}: {str(err)[:200]}); it is '
                       f'truncated or was not written by this code: {fix}') from None


LAST = 'last_model'


def newest_state(run_dir):
    """(path, state) of the newest resume state in `run_dir`, or (None, None) when it holds none.

    An epoch writes <epoch>.pdopt before last_model.pdopt, so a run killed between the two has
    its newest state in <epoch>.pdopt: a later epoch than last_model's, written after it. Otherwise
    last_model.pdopt is the newest; a later <epoch>.pdopt written before it is what a run resumed
    from an earlier epoch (--resume 3.pdparams) left behind, and is not continued.
    """
    numbered = sorted(int(f[:-len('.pdopt')]) for f in os.listdir(run_dir)
                      if f.endswith('.pdopt') and f[:-len('.pdopt')].isdigit())
    last = os.path.join(run_dir, LAST + '.pdopt')
    state = read_state_file(last) if os.path.isfile(last) else None
    last_epoch = state.get('epoch', -1) if isinstance(state, dict) else -1
    if numbered and numbered[-1] > last_epoch:
        path = os.path.join(run_dir, f'{numbered[-1]}.pdopt')
        if state is None or os.path.getmtime(path) >= os.path.getmtime(last):
            return path, read_state_file(path)
    return (last, state) if state is not None else (None, None)


def resume_path(resume, run_dir):
    """(the .pdopt to resume from, its state when already read), or (None, None) for a fresh start."""
    if resume is None:
        return None, None
    if resume == 'auto':
        path, state = newest_state(run_dir) if os.path.isdir(run_dir) else (None, None)
        if path:
            return path, state
        weights = sorted(f for f in os.listdir(run_dir) if f.endswith('.pdparams')) \
            if os.path.isdir(run_dir) else []
        if weights:  # starting over would overwrite them
            raise FRNError(f'--resume auto: {run_dir} holds {", ".join(weights[:4])} but no .pdopt file, so '
                           f'there is no resume state to continue from; start again with --overwrite instead of '
                           f'--resume (which deletes them), or choose another --checkpoint_dir')
        return None, None
    path = os.path.splitext(resume)[0] + '.pdopt'
    if not os.path.isfile(path):
        raise FRNError(f'--resume {resume!r} has no {os.path.basename(path)} beside it, so the optimizer and '
                       f'schedule cannot be restored; resume from last_model.pdparams or a <epoch>.pdparams '
                       f'saved by this code')
    return path, None


def catch_up_last_model(path, state, run_dir, log):
    """A run killed between an epoch's <epoch>.* and last_model.* writes resumes from <epoch>.pdopt; last_model.*
    is brought up to that epoch, as the killed run would have left it (its .pdparams, then its .pdopt)."""
    if os.path.basename(path) == LAST + '.pdopt':
        return
    last = os.path.join(run_dir, LAST + '.pdopt')
    try:
        held = read_state_file(last) if os.path.isfile(last) else None
    except FRNError:  # damaged: replaced below by the state this run resumes from
        held = None
    if isinstance(held, dict) and held.get('epoch', -1) >= state['epoch']:
        return
    weights = os.path.splitext(path)[0] + '.pdparams'
    if os.path.isfile(weights):
        atomic_write(os.path.join(run_dir, LAST + '.pdparams'), lambda tmp: shutil.copyfile(weights, tmp))
    else:  # a .pdopt written before its .pdparams (by an earlier version of this code)
        atomic_save(state['model'], os.path.join(run_dir, LAST + '.pdparams'))
    atomic_write(os.path.join(run_dir, LAST + '.pdopt'), lambda tmp: shutil.copyfile(path, tmp))
    log(f'{LAST}.pdparams and .pdopt were behind {os.path.basename(path)} (a run stopped between the two '
        f'checkpoints of epoch {state["epoch"]}): copied from it')


RESUME_KEYS = ('model', 'optimizer', 'scheduler', 'epoch', 'best_acc', 'best_epoch', 'args', 'rng')
STAGES = {'stl_frn': 'pretraining (pretrain.py)', 'meta_frn': 'meta-training (meta_train.py)'}


def read_resume_state(path, run_args, model, state=None):
    """The .pdopt at `path` (or its `state`, already read), checked against this run before anything is
    restored: a clear error, not a traceback.

    The state's 'args' and `run_args` are both settings by flag name: TrainConfig.as_flags(), or the
    `vars(args)` of the flags that checkpoints older than engine/config.py saved, with the same keys.
    A key this run has no value for (None) is not compared.
    """
    if state is None:
        state = read_state_file(path)
    if not isinstance(state, dict) or any(k not in state for k in RESUME_KEYS):
        raise FRNError(f'{path!r} is not a resume state of this code (it needs {", ".join(RESUME_KEYS)}); resume '
                       f'from a .pdparams whose .pdopt was written by pretrain.py or meta_train.py')
    saved = state['args'] if isinstance(state['args'], dict) else {}
    method = run_args['method']
    mismatch = []
    if saved.get('method') != method:
        mismatch.append(f'it is {STAGES.get(saved.get("method"), repr(saved.get("method")))}, '
                        f'this run is {STAGES.get(method, method)}')
    # the transforms are refused like the image size: the checkpoints were trained with the saved ones
    for key in ('model', 'dataset', 'image_size', 'train_transform_type', 'eval_resize', 'num_classes',
                'train_n_way', 'n_shot'):
        here = run_args.get(key)
        if key in saved and here is not None and saved[key] != here and (
                key not in ('train_n_way', 'n_shot') or method == 'meta_frn'):
            mismatch.append(f'--{key} is {saved[key]} there, {here} here')
    opt = run_args.get('opt', 'sgd')
    if saved.get('opt', 'sgd') != opt:  # runs saved before --opt existed used SGD
        mismatch.append(f'--opt is {saved.get("opt", "sgd")} there, {opt} here (its optimizer state cannot '
                        f'continue another optimizer)')
    own = model.state_dict()
    weights = state['model'] if isinstance(state['model'], dict) else {}
    wrong = [k for k in own if k not in weights or list(weights[k].shape) != list(own[k].shape)]
    if wrong and not mismatch:
        k = wrong[0]
        mismatch.append(f'its weights do not fit this model ({len(wrong)} parameters, e.g. {k}: '
                        f'{list(weights[k].shape) if k in weights else "missing"} there, {list(own[k].shape)} here)')
    if mismatch:
        raise FRNError(f'--resume {path} belongs to another run: {"; ".join(mismatch)}. Resume with that run\'s '
                       f'flags, or start this one in another --checkpoint_dir (or with --overwrite)')
    return state


def load_resume_state(path, model, optimizer, scheduler, run_args, log, state=None):
    state = read_resume_state(path, run_args, model, state)
    model.set_state_dict(state['model'])
    load_optimizer_state(optimizer, model, state['optimizer'])
    scheduler.set_state_dict(state['scheduler'])
    paddle.set_rng_state(state['rng']['paddle'])
    np.random.set_state(state['rng']['numpy'])
    random.setstate(state['rng']['python'])
    changed = [k for k in ('lr', 'wd', 'gamma', 'milestones', 'batch_size', 'seed', 'n_shot', 'n_query',
                           'train_n_way', 'train_n_episode', 'episodes', 'val_freq', 'val_n_query', 'image_size',
                           'model')
               if k in state['args'] and state['args'][k] != run_args.get(k)]
    if changed:
        log(f'warning: resuming with different {", ".join(changed)} than the saved run')
    log(f'resumed from {path}: epoch {state["epoch"]} done, best acc {state["best_acc"]:.2f} '
        f'at epoch {state["best_epoch"]}')
    return state


def train(config, model, train_loader, train_step, val_loader, log):
    """Train for config.optim.epoch epochs in config.run_dir(); val_loader: the validation episodes (None with
    --val last)."""
    optim, val, run, compute = config.optim, config.val, config.run, config.compute
    run_dir, run_args = config.run_dir(), config.as_flags()
    train_note, val_note = config.accuracy_notes()
    optimizer, scheduler = build_optimizer(optim, model)
    start_epoch, best_acc, best_epoch = 0, -1.0, -1
    path, state = resume_path(run.resume, run_dir)
    if path:
        state = load_resume_state(path, model, optimizer, scheduler, run_args, log, state)
        start_epoch, best_acc, best_epoch = state['epoch'] + 1, state['best_acc'], state['best_epoch']
    elif run.resume == 'auto':
        log(f'--resume auto: no resume state (.pdopt) in {run_dir}, starting from epoch 0')
    main = parallel.is_main()
    # the inputs are checked: only now does --overwrite delete the earlier run, and the run write its files
    if main and path:
        catch_up_last_model(path, state, run_dir, log)
    if main and run.resume is None and run.overwrite:
        for note in clear_earlier_run(run_dir):
            log(note)
    log.persist()  # from here on the run is logged to its file
    step = parallel.wrap(TrainStep(model, train_step))  # after resuming: DataParallel broadcasts rank 0's weights
    if main:  # what the model's input must be, beside its checkpoints (data/preprocess.py)
        write_sidecar(run_dir, record_for(config.data.dataset, config.data.image_size, config.data.eval_resize))
    ckpt = lambda name: os.path.join(run_dir, f'{name}.pdparams')  # noqa: E731
    metrics = MetricsLog(os.path.join(run_dir, METRICS_FILE) if main else None,
                         os.path.join(run_dir, 'visualdl') if run.visualdl else None, log)

    for epoch in range(start_epoch, optim.epoch):
        start = time.time()
        train_loader.set_epoch(epoch)
        model.train()
        log(f'Epoch {epoch} | lr {optimizer.get_lr():.6g}')
        about_epoch = getattr(train_loader, 'describe_epoch', lambda: None)()
        if about_epoch:
            log(f'Epoch {epoch} | {about_epoch}')
        metrics.epoch_start(epoch, optimizer.get_lr())
        losses, accs = [], []
        timer = BatchTimer()
        for i, batch in enumerate(progress(train_loader, desc=f'epoch {epoch}')):
            timer.got_batch(batch)
            loss, acc = step(batch)
            optimizer.clear_grad()
            loss.backward()
            parallel.after_backward(model)
            optimizer.step()
            losses.append(loss.item())
            accs.append(acc)
            timer.step_done()
            metrics.batch(epoch, i, len(train_loader), losses[-1])
            if not np.isfinite(losses[-1]):
                raise FRNError(f'the loss became {losses[-1]} at epoch {epoch}, batch {i}; '
                               f'lower --lr (now {optim.lr}) and start again')
            if i % run.print_freq == 0:  # the same steps on every rank, so the mean is a valid collective
                log(f'Epoch {epoch} | Batch {i}/{len(train_loader)} | Loss {parallel.mean_over_ranks(losses[-1:])[0]:.6f}'
                    + timer.report())
        scheduler.step()
        parallel.average_buffers(model)
        train_loss, train_acc = parallel.mean_over_ranks([np.mean(losses), np.mean(accs)])
        if not main:
            continue

        val_loss = val_acc = val_seconds = None
        if val.val == 'meta' and validates_after(epoch, val.val_freq, optim.epoch):
            val_start = time.time()
            # a new cache each time: the weights changed since the last validation
            cache = None if compute.no_feature_cache else feature_cache_for(model, val_loader, compute.max_cache_mb)
            val_accs, val_loss = evaluate(model, val_loader, *config.val_episode(), cache=cache)
            val_acc, _ = mean_confidence_interval(val_accs)
            val_seconds = round(time.time() - val_start, 2)
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
                log('best model! save...')
                atomic_save(model.state_dict(), ckpt('best_model'))
            log(f'val loss is {val_loss:.2f}, val acc is {val_acc:.2f} ({val_note})')
            log(f'model best acc is {best_acc:.2f}, best acc epoch is {best_epoch}')
        elif val.val != 'meta':
            best_epoch = epoch
            atomic_save(model.state_dict(), ckpt('best_model'))
        if epoch % run.save_freq == 0 or epoch == optim.epoch - 1:
            save_checkpoint(ckpt(epoch), model, optimizer, scheduler, epoch, best_acc, best_epoch, run_args)
        save_checkpoint(ckpt('last_model'), model, optimizer, scheduler, epoch, best_acc, best_epoch, run_args)
        minutes = (time.time() - start) / 60
        log(f'This epoch use {minutes:.2f} minutes')
        log(f'train loss is {train_loss:.2f}, train acc is {train_acc:.2f} ({train_note})')
        metrics.epoch_end(epoch, train_loss=float(train_loss), train_acc=float(train_acc), val_loss=val_loss,
                          val_acc=val_acc, best_acc=best_acc, best_epoch=best_epoch, minutes=round(minutes, 4),
                          steps=len(losses), val_seconds=val_seconds, pretraining=config.pretraining,
                          train_way=config.train_way(), val_way=val.val_n_way)

    metrics.close()
    if parallel.world_size() > 1:
        print(f'rank {parallel.rank()} of {parallel.world_size()}: final weights fingerprint '
              f'{parallel.fingerprint(model)}', flush=True)
    if main:
        save_curves(run_dir, log)  # also after a resumed run, over all its epochs
    return best_acc, best_epoch
