"""CPU threads and the device: the one place that decides whether a run uses the GPU."""
import os
import sys


def default_threads():
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def set_threads(n):
    """Set the CPU math threads (`import paddle` pins OMP_NUM_THREADS=1 when it is unset); returns the number."""
    from runtime.paddle_internals import set_math_threads
    n = max(1, int(n))
    set_math_threads(n)
    return n


def gpu_usable():
    """A CUDA build of PaddlePaddle with a visible device."""
    import paddle
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def resolve_gpu(asked):
    """Whether to run on the GPU (--gpu): when asked for and usable. Asked for on a build without CUDA: a warning,
    and the CPU (call it once per run)."""
    if not asked:
        return False
    if gpu_usable():
        return True
    print('warning: --gpu was given, but this PaddlePaddle build has no CUDA device; running on the CPU. '
          'Install paddlepaddle-gpu (see README) to use a GPU.', file=sys.stderr)
    return False


def select_device(gpu):
    """Put paddle on the GPU when `gpu` asks for it and resolve_gpu allows it, else on the CPU; returns the device."""
    import paddle
    return paddle.device.set_device('gpu' if resolve_gpu(gpu) else 'cpu')
