"""The collectives of a data-parallel run (paddle.distributed.launch), beyond the gradient
all-reduce that paddle.DataParallel does in backward: the per-step flags that make every
rank stop at the same step (trainer.Trainer._with_all_ranks), the barrier while rank 0
saves, and a check that all ranks hold the same weights. GPU ranks talk over NCCL, CPU
ranks over gloo (tests/test_data_parallel.py runs two CPU ranks)."""
import paddle
import paddle.distributed as dist

from utils import ToolkitError


def max_over_ranks(values):
    """The element-wise maximum of a list of ints over all ranks (one small all-reduce)."""
    t = paddle.to_tensor([int(v) for v in values], dtype="int64")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.numpy()]


def barrier():
    dist.barrier()


def check_weights_in_sync(parameters, step):
    """Sanity check: every rank holds the same trained weights (BN running statistics, which
    stay per rank, have no gradient and are left out). Returns the weights' sum."""
    total = float(sum(float(p.astype("float64").sum()) for p in parameters if not p.stop_gradient))
    hi = paddle.to_tensor([total], dtype="float64")
    lo = paddle.to_tensor([total], dtype="float64")
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    hi, lo = float(hi.numpy()[0]), float(lo.numpy()[0])
    if abs(hi - lo) > 1e-6 * max(1.0, abs(hi)):
        raise ToolkitError("data-parallel ranks hold different weights (sum {} vs {}) after step {}: "
                           "report this bug".format(lo, hi, step))
    return hi


COLLECTIVE_ERRORS = ("gloo", "NCCL", "nccl", "ProcessGroup")


def lost_rank(exc, world_size, models_dir):
    """A one-line ToolkitError when ``exc`` is a failed collective of a data-parallel run (a
    gloo / NCCL error or timeout: another rank stopped or died), else None."""
    text = str(exc)
    if world_size <= 1 or not any(k in text for k in COLLECTIVE_ERRORS):
        return None
    first = (text.strip().splitlines() or [""])[-1].strip()[:300]
    return ToolkitError("data-parallel communication failed ({}): another rank probably stopped or died "
                        "(its log, log/workerlog.<rank> under paddle.distributed.launch, says why); continue "
                        "with --resume from the last checkpoint in {}".format(first, models_dir))
