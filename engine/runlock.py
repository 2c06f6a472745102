"""One run at a time in a run folder: a lock file, and what a fresh run may find there.

Two runs writing one folder leave a mix of both (one's `0.pdparams`, the other's
`last_model`, an interleaved log) that `--resume auto` would then continue. So every
long-running tool that writes a folder of checkpoints (pretrain.py and meta_train.py in
their run folder, tools/train_inverter.py in its --out) holds `<folder>/run.lock` from
before it reads its data until it exits.

The lock is a POSIX record lock (`fcntl.lockf`) on that file, which holds the owner's pid,
host and start time for the message a second run prints. The kernel drops the lock when
its process dies, however it dies, so a lock file left by a killed run is stale exactly
when it can be locked again: the next run takes it over and says so. Record locks are
not inherited by forked children (DataLoader workers), so an orphaned worker cannot keep
a folder locked. They also work on NFS through its lock daemon; on a file system without
locking, `lockf` fails and the error says so.

Under paddle.distributed.launch only rank 0 takes the lock: the ranks of one run are one
run, and a second run's rank 0 stops at the lock (the launcher then ends its other ranks).
"""
import datetime
import errno
import fcntl
import json
import os
import socket

from runtime.process import Terminated, sigterm_received
from utils import FRNError, remove_leftover_temp_files

LOCK_NAME = 'run.lock'
CHECKPOINT_EXTENSIONS = ('.pdparams', '.pdopt')


def describe_owner(info):
    return (f'pid {info.get("pid", "?")} on host {info.get("host", "?")}, started {info.get("started", "?")}'
            + (f', command: {info["command"]}' if info.get('command') else ''))


def _read_info(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536).decode('utf-8', 'replace')
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


TRAINING_FLAG = '--checkpoint_dir (or other --dataset/--model/way/shot flags, which name the folder)'


class RunLock:
    """Hold `folder` for this process; `notes` says what was found and done (for the log).

    `flag` names the option that chose the folder, for the message of a second run. `resume_hint`,
    once the holder sets it, is added to a Ctrl-C or SIGTERM that ends the `with` block, for the
    message of runtime/command.cli_main (say how to continue)."""

    def __init__(self, folder, command='', flag=TRAINING_FLAG):
        self.folder, self.command, self.flag = os.path.abspath(folder), command, flag
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.fd, self.notes, self.created_folder = None, [], False
        self.resume_hint = ''

    def acquire(self):
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder)
            self.created_folder = True
        while True:  # a file unlinked by its owner between our open and our lock is retried
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                info = _read_info(fd)
                os.close(fd)
                if err.errno in (errno.EACCES, errno.EAGAIN):
                    raise FRNError(f'run folder {self.folder} is in use by another run ({describe_owner(info)}); '
                                   f'wait for it to end or stop it, or give this run another {self.flag}') from None
                raise FRNError(f'cannot lock {self.path} ({err.strerror}); this file system does not support '
                               f'file locks, so choose a folder on a local disk ({self.flag.split()[0]})') from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        previous = _read_info(fd)
        if previous:
            self.notes.append(f'took over the run folder\'s lock from a run that is no longer running '
                              f'({describe_owner(previous)})')
        info = {'pid': os.getpid(), 'host': socket.gethostname(),
                'started': datetime.datetime.now().isoformat(timespec='seconds'), 'command': self.command}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + '\n').encode())
        removed = remove_leftover_temp_files(self.folder)
        if removed:
            self.notes.append(f'removed {len(removed)} temp file(s) that an interrupted run left in {self.folder}: '
                              f'{", ".join(removed)}')
        return self

    def release(self):
        """Unlock; an empty folder that this run created is removed again (nothing is left by a run that stopped at its checks)."""
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # while still locked, so no one takes over a file that is going away
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        if self.created_folder:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass  # it holds files now

    def __enter__(self):  # `with RunLock(...).acquire() as lock:` releases it however the block ends
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc is not None and self.resume_hint and (isinstance(exc, (KeyboardInterrupt, Terminated))
                                                     or sigterm_received()):
            exc.resume_hint = self.resume_hint
        self.release()


def claim_run_dir(folder, resume, overwrite, command):
    """Lock a training run's folder (rank 0 of a run), clear an interrupted run's temp files, refuse to mix runs.

    An --overwrite run deletes the earlier run's checkpoints later, in engine/trainer.train, once all
    its checks have passed. Returns the held RunLock; its `notes` go into the log. Use it as a context manager.
    """
    lock = RunLock(folder, command)
    if int(os.environ.get('PADDLE_TRAINER_ID', '0')) != 0:  # the ranks of one run share rank 0's lock
        return lock
    lock.acquire()
    try:
        refuse_earlier_run(lock.folder, resume, overwrite)
    except BaseException:
        lock.release()
        raise
    lock.resume_hint = f'; {folder} keeps every finished epoch: continue with the same command and --resume auto'
    return lock


def checkpoint_files(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.endswith(CHECKPOINT_EXTENSIONS))


def refuse_earlier_run(folder, resume, overwrite):
    """Refuse to start a new run over another run's checkpoints unless --overwrite says so.

    Only a check: the checkpoints are deleted by `clear_earlier_run`, once the new run has passed
    all its checks, so a run that stops at a check leaves the earlier one intact.
    """
    found = checkpoint_files(folder)
    if resume is None and found and not overwrite:
        raise FRNError(f'run folder {folder} already holds the checkpoints of an earlier run ({len(found)} files: '
                       f'{", ".join(found[:4])}{", ..." if len(found) > 4 else ""}); continue it with --resume auto, '
                       f'start it again with --overwrite (which deletes them once the new run has passed its checks), '
                       f'or choose another --checkpoint_dir')


def clear_earlier_run(folder, names=None):
    """--overwrite, when the new run starts writing: delete the earlier run's checkpoints (`names`, by default every
    .pdparams and .pdopt) and curves.png, and keep its output.log as output.<time>.log. Returns notes for the log."""
    found = [n for n in (checkpoint_files(folder) if names is None else names)
             if os.path.isfile(os.path.join(folder, n))]
    if not found:
        return []
    for name in found + [n for n in ('curves.png',) if os.path.exists(os.path.join(folder, n))]:
        os.remove(os.path.join(folder, name))
    notes = [f'--overwrite: deleted the {len(found)} checkpoint files of the earlier run in {folder}']
    old_log = os.path.join(folder, 'output.log')
    if os.path.exists(old_log):
        stamp = datetime.datetime.fromtimestamp(os.path.getmtime(old_log)).strftime('%Y%m%d-%H%M%S')
        kept = os.path.join(folder, f'output.{stamp}.log')
        os.replace(old_log, kept)
        notes.append(f'--overwrite: the earlier run\'s log is kept as {kept}')
    return notes
