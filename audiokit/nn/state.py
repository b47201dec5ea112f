"""Streaming state for blocks that run step by step along time.

Every block whose output at frame ``t`` depends only on frames ``<= t`` (a
*causal* configuration) derives from :class:`StreamingModule` and implements
:meth:`StreamingModule.step`, a pure function of a chunk and an explicit state
dict of tensors::

    y, state = block.step(x_chunk, state)      # state=None at the start

Concatenating the outputs of successive ``step`` calls gives exactly the
offline ``forward`` output (up to float rounding).  For whole models the
:func:`streaming` context manager keeps each block's state inside the block,
so a model's ordinary ``forward`` processes one chunk after another (the
pattern of audiocraft/moshi's StreamingModule)::

    with streaming(model):
        for chunk in chunks:
            out = model(chunk)

A stream can be stopped and resumed: :func:`stream_states` gives the state of
every block by module name, and ``streaming(model, states)`` restores it.
Restoring is strict: names that are not the model's streaming blocks, blocks
left out, or a block state whose keys are not the ones its ``step`` keeps
raise :class:`StreamStateError` (at the restore, or at the block's first step).
At the end of a stream, :meth:`StreamingModule.flush` gives the output a state
still holds.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import nn

State = Dict[str, torch.Tensor]


class StreamStateError(ValueError):
    """A restored streaming state does not fit the model: unknown or missing blocks or keys."""


def _mismatch(given, expected, what: str) -> None:
    """StreamStateError naming the ``what`` in ``given`` but not ``expected`` and the reverse."""
    unknown, missing = sorted(set(given) - set(expected)), sorted(set(expected) - set(given))
    if unknown or missing:
        raise StreamStateError(f"{what} do not match: unknown {unknown}, missing {missing}")


def state_keys(state, prefix: str = "") -> set:
    """The keys of a (nested) state dict, nested ones as ``"outer.inner"``."""
    keys = set()
    for key, value in state.items():
        keys |= state_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


class StreamingModule(nn.Module):
    """A block that can carry its time context from one chunk to the next.

    Subclasses implement :meth:`step`.  While :func:`streaming` is active on
    an ancestor, calling the module routes to :meth:`step` with the state kept
    in ``self._stream_state``.
    """

    _streaming_active: bool = False
    _restored: bool = False  # the state was restored: its keys are checked at the next step
    #: False for blocks whose sequence axis is not time (e.g. an FSMN run
    #: along frequency): they keep no state across chunks.
    streams_time: bool = True

    @property
    def is_streaming(self) -> bool:
        """True inside :func:`streaming`: calling the block runs :meth:`step` with the state it keeps (a parent
        must then call it, not a fused offline shortcut of it)."""
        return self._streaming_active

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        """Process one chunk; return the output chunk and the new state."""
        raise NotImplementedError

    def flush(self, state: State) -> torch.Tensor:
        """End of a stream: the output still held in ``state`` (the last one :meth:`step` returned), e.g. an
        overlap-add tail. Whole models that hold output implement it (the runtime calls it last)."""
        raise NotImplementedError(f"{type(self).__name__} holds no output to flush")

    def __call__(self, *args, **kwargs):
        if self._streaming_active:
            old = self._stream_state
            y, self._stream_state = self.step(*args, old, **kwargs)
            if self._restored and old is not None:
                _mismatch(state_keys(old), state_keys(self._stream_state), f"{type(self).__name__} state keys")
            self._restored = False
            return y
        return super().__call__(*args, **kwargs)


def streaming_modules(model: nn.Module) -> Iterator[StreamingModule]:
    """Every :class:`StreamingModule` inside ``model`` (itself included)."""
    for module in model.modules():
        if isinstance(module, StreamingModule):
            yield module


def set_streaming(model: nn.Module, active: bool) -> None:
    """Switch every streaming block of ``model`` on or off; resets the state."""
    for module in streaming_modules(model):
        module._streaming_active = active and module.streams_time
        module._stream_state, module._restored = None, False


@contextlib.contextmanager
def streaming(model: nn.Module, states: Optional[Dict[str, Optional[State]]] = None):
    """Context in which ``model`` processes successive chunks of one stream.

    The state starts empty (zeros history) unless ``states`` (from
    :func:`stream_states`) resumes an earlier stream: exactly the model's
    streaming blocks, else :class:`StreamStateError`. It is dropped on exit,
    so a model outside the context always runs offline.
    """
    set_streaming(model, True)
    if states is not None:
        active = {name: module for name, module in model.named_modules()
                  if isinstance(module, StreamingModule) and module._streaming_active}
        try:
            _mismatch(states, active, "streaming blocks")
        except StreamStateError:
            set_streaming(model, False)
            raise
        for name, module in active.items():
            module._stream_state, module._restored = states[name], True
    try:
        yield model
    finally:
        set_streaming(model, False)


def stream_states(model: nn.Module) -> Dict[str, Optional[State]]:
    """The state of every active streaming block of ``model``, by module name."""
    return {name: module._stream_state for name, module in model.named_modules()
            if isinstance(module, StreamingModule) and module._streaming_active}


def cat_history(history: Optional[torch.Tensor], x: torch.Tensor, size: int,
                dim: int = -1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prepend ``size`` frames of history to ``x`` along ``dim``.

    Missing history (start of the stream) is zeros, which is what the offline
    causal padding uses.  Returns ``(x_with_history, new_history)`` where
    ``new_history`` holds the last ``size`` frames for the next call.
    """
    dim = dim % x.dim()
    if size == 0:
        return x, x.narrow(dim, 0, 0)
    if history is None:
        shape = list(x.shape)
        shape[dim] = size
        history = x.new_zeros(shape)
    full = torch.cat([history, x], dim=dim)
    return full, full.narrow(dim, full.shape[dim] - size, size)


def require_causal(block: nn.Module, causal: bool) -> None:
    """Raise a clear error when a block built with look-ahead is asked to step."""
    if not causal:
        raise RuntimeError(f"{type(block).__name__} was built non-causal (it reads future "
                           "frames) and cannot run step by step; build it with causal=True")


class ChildSteps:
    """Steps the streaming children of a composite block with one flat state.

    The composite's state dict holds each child's entries under
    ``"<name>.<key>"``.  Call the object as ``steps(name, child, x)`` in
    place of ``child(x)``; afterwards ``steps.state`` is the composite's new
    state::

        steps = ChildSteps(state)
        y = steps("conv", self.conv, x)
        return y, steps.state
    """

    def __init__(self, state: Optional[State]):
        self._old = state or {}
        self.state: State = {}

    def __call__(self, name: str, child: StreamingModule, x: torch.Tensor) -> torch.Tensor:
        prefix = name + "."
        old = {k[len(prefix):]: v for k, v in self._old.items() if k.startswith(prefix)}
        y, new = child.step(x, old or None)
        self.state.update({prefix + k: v for k, v in new.items()})
        return y


def call_offline(name: str, child: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Offline counterpart of :class:`ChildSteps`: ``child(x)``."""
    return child(x)


class StreamingComposite(StreamingModule):
    """A block made of stateless layers and streaming children.

    Subclasses set ``self.causal`` and write the computation once, in
    ``_run(x, call)``, calling each streaming child as ``call(name, child, h)``:
    ``forward`` runs it offline, ``step`` runs it with the children's states
    (and refuses when the block is not causal).
    """

    causal: bool = False

    def _run(self, x: torch.Tensor, call) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, call_offline)

    def step(self, x: torch.Tensor, state: Optional[State]) -> Tuple[torch.Tensor, State]:
        require_causal(self, self.causal)
        steps = ChildSteps(state)
        return self._run(x, steps), steps.state
