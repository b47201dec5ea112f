"""Streaming state is public and strict: a stream stops and resumes through ``stream_states``/``streaming``;
restoring names or keys that do not fit the model raises; ``flush(state)`` gives the tail a state holds."""
from __future__ import annotations

import re

import pytest
import torch
from tiny_model import tiny_frcrn

from audiokit.nn.state import StreamingModule, StreamStateError, stream_states, streaming

torch.set_num_threads(1)


def _signal() -> torch.Tensor:
    torch.manual_seed(1)
    return 0.1 * torch.randn(1, 3200)


def _stopped(model, x: torch.Tensor) -> dict:
    """The states of ``model`` after streaming the first half of ``x``."""
    with torch.no_grad(), streaming(model):
        model(x[:, :1600])
        return stream_states(model)


def test_a_resumed_stream_continues_exactly_and_flush_gives_the_tail():
    model, x = tiny_frcrn(), _signal()
    states = _stopped(model, x)
    with torch.no_grad(), streaming(model, states):
        rest = model(x[:, 1600:])
        tail = model.flush(stream_states(model)[""])
    with torch.no_grad():
        offline = model.enhance(x)
    # the stream runs stream_lead samples behind the offline output; the tail is its last stream_lead samples
    assert tail.shape == (1, model.stream_lead)
    torch.testing.assert_close(torch.cat([rest, tail], -1), offline[:, 1600 - model.stream_lead:], atol=1e-5, rtol=0)
    with pytest.raises(NotImplementedError, match="holds no output to flush"):
        StreamingModule().flush({})


def _offline(model) -> bool:
    return not any(m._streaming_active for m in model.modules() if isinstance(m, StreamingModule))


def test_unknown_or_missing_blocks_are_refused():
    model, x = tiny_frcrn(), _signal()
    states = _stopped(model, x)
    unknown, missing = {**states, "unet.bogus": None}, {k: v for k, v in states.items() if k != ""}
    for bad, named in ((unknown, "unknown ['unet.bogus'], missing []"), (missing, "unknown [], missing ['']")):
        with pytest.raises(StreamStateError, match=re.escape(f"streaming blocks do not match: {named}")):
            with streaming(model, bad):
                pass
        assert _offline(model)


def test_unknown_or_missing_keys_of_a_block_are_refused():
    model, x = tiny_frcrn(), _signal()
    states = _stopped(model, x)
    root = states[""]  # FRCRN's own state: {"stft": {"history"}, "istft": {"wav", "norm"}}
    cases = (({**root, "bogus": torch.zeros(1)}, "unknown ['bogus'], missing []"),
             ({"stft": root["stft"]}, "unknown [], missing ['istft.norm', 'istft.wav']"))
    for bad, named in cases:
        with pytest.raises(StreamStateError, match=re.escape(f"FRCRN state keys do not match: {named}")):
            with torch.no_grad(), streaming(model, {**states, "": bad}):
                model(x[:, 1600:])
        assert _offline(model)
