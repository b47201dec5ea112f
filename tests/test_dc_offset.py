"""A DC offset never reaches the model: arrays, files, chunked and live streams give the output of the signal
without it (issue 18), for enhancers, separators and dance generators."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from tiny_model import save_tiny, tiny_dance, tiny_frcrn

import audiokit
from audiokit.audio.dc import DCBlocker, remove_dc
from audiokit.audio.io import read_audio
from audiokit.cli.main import main
from audiokit.streaming.adapters import DanceAdapter, EnhanceAdapter
from audiokit.streaming.pipeline import BlockPipeline
from audiokit.streaming.realtime import BlockEngine, drive

torch.set_num_threads(1)  # the machine is shared
OFFSET = 0.6


def voice(seconds: float = 0.5, rate: int = 16000) -> np.ndarray:
    from conftest import speechlike
    return 0.6 * speechlike(seconds, rate)


def test_dc_blocker_streams_exactly_and_keeps_speech():
    rate = 16000
    x = torch.from_numpy(np.stack([voice(), voice()[::-1].copy()])) + OFFSET
    whole = remove_dc(x, rate)
    blocker = DCBlocker(rate, 2)
    pieces = torch.cat([blocker(p) for p in x.split(333, dim=-1)], dim=-1)
    torch.testing.assert_close(pieces, whole, atol=1e-7, rtol=0)
    assert whole.mean().abs() < 0.01 and whole[:, 0].abs().max() < 1e-6  # the offset is gone from the first sample
    for low in (1000, 16000):  # the recursion itself, over many of its stretches at 1 kHz
        pole = np.exp(-2 * np.pi * 10 / low)
        signal, expected, before, out = x[0].double().numpy(), [], x[0, 0].item(), 0.0
        for sample in signal:
            out, before = (1 + pole) / 2 * (sample - before) + pole * out, sample
            expected.append(out)
        np.testing.assert_allclose(remove_dc(signal, low), expected, atol=1e-12)
    t = np.arange(rate) / rate
    for hz in (100, 1000, 7000):  # speech passes (a 10 Hz cut-off)
        tone = np.sin(2 * np.pi * hz * t).astype(np.float32)
        assert 0.99 < np.std(remove_dc(tone, rate)[rate // 2:]) / np.std(tone[rate // 2:]) < 1.01


def test_an_offset_changes_nothing_in_arrays_files_and_streams(tmp_path):
    model, rate = tiny_frcrn(), 16000
    x = voice()
    clean = audiokit.enhance(x, rate, model)
    np.testing.assert_allclose(audiokit.enhance(x + OFFSET, rate, model), clean, atol=1e-5)
    np.testing.assert_allclose(audiokit.enhance(x + OFFSET, rate, model, stream=True, chunk_ms=10), clean, atol=1e-5)
    np.testing.assert_allclose(audiokit.enhance(x + OFFSET, 44100, model), audiokit.enhance(x, 44100, model),
                               atol=1e-5)
    halves = audiokit.separate(x + OFFSET, rate, model=Halves())
    np.testing.assert_allclose(halves, audiokit.separate(x, rate, model=Halves()), atol=1e-5)
    sf.write(tmp_path / "dc.wav", x + 0.3, rate, subtype="FLOAT")  # a file: through the CLI
    assert main(["enhance", str(tmp_path / "dc.wav"), "--model", str(save_tiny(tmp_path / "tiny.safetensors"))]) == 0
    np.testing.assert_allclose(read_audio(tmp_path / "dc_enhanced.wav")[0][0], clean, atol=1e-4)


def test_live_stream_removes_the_offset_as_offline_does():
    model, block = tiny_frcrn(), 160
    adapter = EnhanceAdapter(model)
    x = voice()
    outs = []
    for signal in (x, x + OFFSET):
        pipeline = BlockPipeline(adapter.open, 16000, 16000, adapter.output, block=block)
        engine = BlockEngine(pipeline.process, block, policy="wait", restart=pipeline.reset).start()
        latency = engine.delay + pipeline.latency
        outs.append(drive(engine, signal, tail_blocks=latency // block + 1)[0, latency:latency + len(x)])
        engine.stop()
    body = len(x) - 320  # the end: the live input goes on (with silence), the offline one stops
    np.testing.assert_allclose(outs[1][:body], outs[0][:body], atol=1e-5)
    np.testing.assert_allclose(outs[0][:body], audiokit.enhance(x, 16000, model)[:body], atol=1e-5)


class Halves(torch.nn.Module):
    """Stand-in separator: two halves of the input."""
    sample_rate, num_spks = 16000, 2

    def separate(self, wav):
        return torch.stack([wav / 2, wav / 2], dim=1)


def test_dancers_never_hear_an_offset():
    """An offset is inaudible: a dancer dances (offline, API, streamed) as without it. (A dance model in training
    heard +0.02 as another song: its log-power spectra start at 0 Hz.) The classifiers get the input as it is."""
    rate = 22050
    x = voice(0.7, rate)
    dancer = tiny_dance()
    heard = []
    features = dancer.features
    dancer.features = lambda wav, lead=0: heard.append(features(wav, lead)) or heard[-1]
    for signal in (x, x + OFFSET):  # offline
        audiokit.dance(signal, rate, model=dancer, style="waltz")
    torch.testing.assert_close(heard[1], heard[0], atol=0.01, rtol=0)  # log power: the offset moved it by 20
    adapter = DanceAdapter(dancer, style="waltz")
    streamed = []
    for signal in (x, x + OFFSET):  # streamed, as stream dance runs it
        heard.clear()
        pipeline = BlockPipeline(adapter.open, rate, adapter.sample_rate, adapter.output, block=441,
                                 dc_free=adapter.dc_free)
        [pipeline.process(block) for block in signal[:len(signal) // 441 * 441].reshape(-1, 441)]
        streamed.append(torch.cat(heard, dim=1))
    torch.testing.assert_close(streamed[1], streamed[0], atol=0.01, rtol=0)
