"""Forking worker processes from a process that runs paddle: what a child must not do.

Seen (py-spy, both in paddle.io.DataLoader workers and in the image cache's process pool):
a child blocked for ever in pthread_cond_destroy, called by libpaddle from the child's
garbage collector. The child was freeing a paddle object that the parent had dropped in a
reference cycle, whose condition variable a parent thread had been using; the child does not
have that thread, so the destruction waits for it for ever. Whether a collection runs in the
child, and what it finds, depends on timing.

So every fork of this process (paddle.io.DataLoader's workers, which must inherit the dataset)
happens inside `collected_and_frozen()`: the parent's garbage is collected
first, and what is left is frozen (gc.freeze) across the fork, so children never collect
what they inherited. The parent unfreezes right after; its own collections go on as before.
Workers that need nothing of the parent (the image cache's) start from a fork server instead.
"""
import contextlib
import gc


@contextlib.contextmanager
def collected_and_frozen():
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
