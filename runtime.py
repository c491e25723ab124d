"""Where the computation runs: CPU thread settings, the device, the environment a run logs. Entry scripts
call :func:`cpu_env_defaults` before Paddle is imported (the math libraries read their thread variables at
load time), then :func:`pick_device`."""
import os
import sys
import warnings


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_env_defaults():
    """Set CPU math-library defaults BEFORE paddle's import (keeping values already set); returns those set.
    Idle OpenMP threads sleep, not spin against the data-loader workers; OMP_NUM_THREADS = CPU count (MKL
    multi-threads only if set before import); MKL_DEBUG_CPU_TYPE=5 on AMD (else MKL skips its AVX2 kernels)."""
    wanted = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0", "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    if "AuthenticAMD" in _cpuinfo()[:4096]:
        wanted["MKL_DEBUG_CPU_TYPE"] = "5"
    done = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(done)
    return done


def quiet_paddle_notices():
    """Silence Paddle's ccache hint at import and BatchNorm's per-forward note on running statistics."""
    warnings.filterwarnings("ignore", message="No ccache found")
    warnings.filterwarnings("ignore", message="When training, we now always track")


def set_cpu_threads(n=None):
    """Paddle's CPU kernels use ``n`` threads (default ``$OMP_NUM_THREADS`` or all cores; Paddle 3's: 1); returns n."""
    if n is None:
        n = int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)
    import paddle
    paddle.base.core.set_num_threads(int(n))
    return int(n)


def limit_threads(n=1):
    """Limit OpenCV, OpenMP, MKL, OpenBLAS and (if imported) Paddle to ``n`` threads (one core per pool worker).
    The variables reach only libraries loaded later: call it before Paddle's import (and after, for Paddle's)."""
    os.environ.update({var: str(n) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    import cv2
    cv2.setNumThreads(n)
    if "paddle" in sys.modules:
        set_cpu_threads(n)


def pick_device(device="auto"):
    """Choose and set the Paddle device: ``auto`` -> ``gpu`` when Paddle is compiled with CUDA and sees a
    GPU, else ``cpu`` (whose math thread count is set too); ``gpu`` without one raises ToolkitError."""
    import paddle
    from utils import ToolkitError
    device = (device or "auto").lower()
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "auto":
        device = "gpu" if has_gpu else "cpu"
    elif device.startswith("gpu") or device.startswith("cuda"):
        if not has_gpu:
            raise ToolkitError(f"no GPU available (--device {device}): use --device cpu, or install "
                               f"Paddle's GPU build (README, 'GPU')")
        device = "gpu"
    elif device != "cpu":
        raise ToolkitError(f"unknown device '{device}' (--device): use auto, cpu or gpu")
    paddle.set_device(device)
    if device == "cpu":
        set_cpu_threads()
    return device


def environment_summary(device):
    """``{"device", "device_name", "paddle", "cuda", "cudnn"}`` for the start-up summary."""
    import platform
    import paddle
    info = {"device": device, "paddle": paddle.__version__, "cuda": None, "cudnn": None}
    if paddle.device.is_compiled_with_cuda():
        info.update(cuda=paddle.version.cuda(), cudnn=paddle.version.cudnn())
    if device == "gpu":
        try:
            info["device_name"] = paddle.device.cuda.get_device_name()
        except Exception:  # pragma: no cover - GPU only
            info["device_name"] = "GPU"
        return info
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    name = names[0] if names else platform.processor() or platform.machine()
    info["device_name"] = f"{name} ({os.cpu_count()} cores)"
    return info
