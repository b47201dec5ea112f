"""Engines that run a model's frame stepper one frame per call, as fast as the platform allows.

A frame stepper (see :class:`~audiokit.streaming.runtime.CausalStream`) is a
frozen ``nn.Module`` with ``initial_state(batch)``, ``forward(wav [B, hop],
state) -> (out [B, hop], state)`` and ``flush(state) -> [B, tail]``.  At 16 ms
per frame the work per call is tiny and the cost is per-operator dispatch, so
the engine matters more than the arithmetic:

* :class:`TorchEngine`: the stepper traced and frozen with TorchScript;
* :class:`OnnxEngine`: the stepper exported once to ONNX (``torch.onnx``,
  cached on disk, keyed on the weights; a cached file that does not load or
  run is exported again) and run by ONNX Runtime on one thread, whose
  per-operator overhead is a fraction of TorchScript's.

:func:`frame_engine` picks one: ``backend="auto"`` uses ONNX Runtime when it
and the exporter are installed and the export succeeds, TorchScript otherwise.
Both give the stepper's output (float rounding aside); states are opaque to the
caller.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import os
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import nn

BACKENDS = ("auto", "onnx", "torch")
_FORMAT = "audiokit-frame-onnx-1"  # bump when the exported graph's interface changes


def cache_dir() -> Path:
    """Where exported frame graphs are kept: ``$AUDIOKIT_CACHE/onnx`` (default ``~/.cache/audiokit/onnx``)."""
    root = os.environ.get("AUDIOKIT_CACHE") or Path.home() / ".cache" / "audiokit"
    return Path(root) / "onnx"


def default_backend() -> str:
    """``$AUDIOKIT_STREAM_BACKEND`` (one of :data:`BACKENDS`), else ``"auto"``."""
    backend = os.environ.get("AUDIOKIT_STREAM_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"AUDIOKIT_STREAM_BACKEND={backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def _cached(stepper: nn.Module, key: tuple, build):
    """``build()`` once per frozen stepper and ``key`` (the stepper never changes once built)."""
    cache = stepper.__dict__.setdefault("_engine_cache", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _trace(stepper: nn.Module, batch: int):
    """``stepper`` traced for ``batch`` and frozen (weights become constants); the module itself
    when tracing fails."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = (torch.zeros(batch, stepper.hop), stepper.initial_state(batch))
            return torch.jit.freeze(torch.jit.trace(stepper.eval(), example, check_trace=False))
    except Exception:  # noqa: BLE001 - tracing is an optimisation only
        return stepper


class TorchEngine:
    """The stepper traced for one batch size and frozen with TorchScript."""

    name = "torch"

    def __init__(self, stepper: nn.Module, batch: int):
        self.stepper, self.batch = stepper, batch
        self.step = _cached(stepper, ("torch", batch), lambda: _trace(stepper, batch))
        self.state = stepper.initial_state(batch)

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """One frame ``[B, hop]`` in, one frame ``[B, hop]`` out."""
        with torch.no_grad(), torch.jit.optimized_execution(False):
            out, self.state = self.step(frame, self.state)
        return out

    def flush(self) -> torch.Tensor:
        """The samples the stepper still holds, ``[B, tail]``."""
        return self.stepper.flush(self.state)


class _FlatStep(nn.Module):
    """``(wav, *state) -> (out, *state)``: the stepper with a flat signature for export."""

    def __init__(self, stepper: nn.Module):
        super().__init__()
        self.stepper = stepper

    def forward(self, wav: torch.Tensor, *state: torch.Tensor):
        out, new = self.stepper(wav, list(state))
        return (out, *new)


def _graph_key(stepper: nn.Module, batch: int) -> str:
    """Hash of everything the exported graph depends on: versions, the code of the stepper's
    modules, its weights and the plain settings of it and its modules, the batch size."""
    digest = hashlib.sha256(f"{_FORMAT}|{torch.__version__}|{batch}".encode())
    for source in sorted({inspect.getfile(type(m)) for m in stepper.modules()}):
        digest.update(Path(source).read_bytes())
    for name, tensor in (*stepper.named_buffers(), *stepper.named_parameters()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for prefix, module in stepper.named_modules():  # plain settings such as use_fft or a level target
        for name, value in sorted(vars(module).items()):
            if isinstance(value, (bool, int, float, str)) and name != "training":
                digest.update(f"{prefix}.{name}={value}".encode())
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Silence ``name``'s log records below ERROR for the duration."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(stepper: nn.Module, batch: int, path: Path) -> Path:
    """Export ``stepper`` for ``batch`` to ``path`` (written under a temporary name, then renamed)."""
    state = stepper.initial_state(batch)
    names = ["wav"] + [f"state_{i}" for i in range(len(state))]
    outputs = ["out"] + [f"new_state_{i}" for i in range(len(state))]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                _quiet_logger("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(_FlatStep(stepper).eval(), (torch.zeros(batch, stepper.hop), *state), str(tmp),
                              dynamo=True, input_names=names, output_names=outputs, external_data=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def onnx_path(stepper: nn.Module, batch: int) -> Path:
    """Where the export of ``stepper`` for ``batch`` is cached."""
    return cache_dir() / f"{type(stepper).__name__}-{_graph_key(stepper, batch)}.onnx"


def _onnx_session(stepper: nn.Module, batch: int):
    """An ONNX Runtime session (one thread) on the cached export of ``stepper`` for ``batch``, exported first
    when there is none or the cached file is unusable (e.g. truncated: one warning, then rebuilt)."""
    import onnxruntime  # noqa: F401 - ImportError now, before any export
    path, log = onnx_path(stepper, batch), logging.getLogger("audiokit")
    if path.is_file():
        try:
            return _checked_session(stepper, batch, path)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, a new export replaces it
            log.warning("warning: the cached ONNX export %s is unusable (%s); exporting it again (about 10 s)",
                        path, " ".join(str(exc).split())[:200])
    else:
        log.info("exporting the model's frame step to ONNX (once per model and machine, about 10 s): %s", path)
    export_onnx(stepper, batch, path)
    return _checked_session(stepper, batch, path)


def _checked_session(stepper: nn.Module, batch: int, path: Path):
    """A session on ``path`` that has run one frame of silence with the shapes ``stepper`` gives."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    state = [t.numpy() for t in stepper.initial_state(batch)]
    inputs = [np.zeros((batch, stepper.hop), np.float32), *state]
    outs = session.run(None, dict(zip([i.name for i in session.get_inputs()], inputs)))
    want = [(batch, stepper.hop), *(s.shape for s in state)]
    if [tuple(o.shape) for o in outs] != [tuple(w) for w in want]:
        raise ValueError(f"outputs of shapes {[o.shape for o in outs]}, expected {want}")
    return session


class OnnxEngine:
    """The stepper exported to ONNX and run by ONNX Runtime on one thread (see the module docstring).

    Raises ``ImportError`` without ``onnxruntime``/the exporter and any export error as is.
    """

    name = "onnx"

    def __init__(self, stepper: nn.Module, batch: int):
        self.stepper, self.batch = stepper, batch
        self.session = _cached(stepper, ("onnx", batch), lambda: _onnx_session(stepper, batch))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.state: List[np.ndarray] = [t.numpy() for t in stepper.initial_state(batch)]

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        """One frame ``[B, hop]`` in, one frame ``[B, hop]`` out."""
        outs = self.session.run(None, dict(zip(self.inputs, [frame.detach().numpy(), *self.state])))
        self.state = outs[1:]
        return torch.from_numpy(outs[0])

    def flush(self) -> torch.Tensor:
        """The samples the stepper still holds, ``[B, tail]``."""
        return self.stepper.flush([torch.from_numpy(s) for s in self.state])


def frame_engine(stepper: nn.Module, batch: int, backend: Optional[str] = None):
    """A fresh engine (with zero state) running ``stepper`` for ``batch`` streams.

    ``backend``: ``"onnx"`` (errors propagate), ``"torch"``, or ``"auto"``/None (ONNX Runtime
    when it works here, TorchScript otherwise; see :func:`default_backend`).
    """
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown streaming backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return TorchEngine(stepper, batch)
    if backend == "onnx":
        return OnnxEngine(stepper, batch)
    failed = stepper.__dict__.setdefault("_engine_failed", set())
    if batch not in failed:
        try:
            return OnnxEngine(stepper, batch)
        except Exception as exc:  # noqa: BLE001 - fall back to TorchScript, which always works
            failed.add(batch)
            warnings.warn(f"ONNX Runtime streaming unavailable ({type(exc).__name__}: {exc}); using TorchScript")
    return TorchEngine(stepper, batch)

