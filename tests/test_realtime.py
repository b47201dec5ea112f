"""The real-time block engine without a sound card: pipeline delay, overload and recovery."""
import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio.dc import remove_dc
from audiokit.audio.resample import resample
from audiokit.models.frcrn import FRCRN
from audiokit.streaming.adapters import EnhanceAdapter, SeparateAdapter
from audiokit.streaming.outputs import OutputSpec
from audiokit.streaming.pipeline import BlockPipeline
from audiokit.streaming.realtime import BlockEngine, drive

torch.set_num_threads(1)


def tiny_causal_frcrn():
    torch.manual_seed(0)
    return FRCRN(win_len=320, win_inc=160, fft_len=320, channels=4, fsmn_hidden=4, causal=True).eval()


class TwoSpeakers(torch.nn.Module):
    """Stand-in separation model: ``separate(wav [B, T]) -> [B, 2, T]`` (a scaled copy and a negated copy)."""

    sample_rate = 16000

    def __init__(self, gain: float = 0.25):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(gain))

    def separate(self, wav):
        return torch.stack([self.gain * wav, -wav], dim=1)


@pytest.mark.parametrize("device_rate,block", [(16000, 160), (16000, 100), (48000, 480)])
def test_engine_output_is_offline_output_delayed_by_reported_latency(device_rate, block):
    model = tiny_causal_frcrn()
    adapter = EnhanceAdapter(model)
    pipeline = BlockPipeline(adapter.open, device_rate, 16000, adapter.output, block=block)
    engine = BlockEngine(pipeline.process, block, policy="wait", restart=pipeline.reset).start()
    wav = np.random.default_rng(1).standard_normal(device_rate // 2).astype(np.float32) * 0.1
    latency = engine.delay + pipeline.latency
    out = drive(engine, wav, tail_blocks=latency // block + 1)
    engine.stop()
    with torch.no_grad():
        x = resample(remove_dc(torch.from_numpy(wav), device_rate), device_rate, 16000)  # the model never sees DC
        expected = resample(model.enhance(x[None])[0], 16000, device_rate).numpy()
    body = len(expected) - device_rate // 50  # the last 20 ms: offline ends the signal, the stream goes on
    assert pipeline.starved == 0 and engine.counters.underruns == 0
    assert np.abs(out[0, :latency]).max() == 0
    np.testing.assert_allclose(out[0, latency:latency + body], expected[:body], atol=1e-4)


def test_live_attenuation_limit_keeps_the_latency_and_mixes_the_input_in_time():
    model = tiny_causal_frcrn()
    plain, limited = EnhanceAdapter(model), EnhanceAdapter(model, atten_lim_db=10)
    wav = np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.1
    outs = []
    for adapter in (plain, limited):
        pipeline = BlockPipeline(adapter.open, 16000, 16000, adapter.output, block=160)
        engine = BlockEngine(pipeline.process, 160, policy="wait", restart=pipeline.reset).start()
        latency = engine.delay + pipeline.latency
        outs.append((drive(engine, wav, tail_blocks=latency // 160 + 1)[0], latency))
        engine.stop()
    (full, latency), (mixed, same) = outs
    assert same == latency
    share = 10 ** (-10 / 20)
    dry = remove_dc(torch.from_numpy(wav), 16000).numpy()
    np.testing.assert_allclose(mixed[latency:latency + 8000], (1 - share) * full[latency:latency + 8000] + share * dry,
                               atol=1e-5)


def test_separation_adapter_streams_every_speaker_with_constant_delay():
    adapter = SeparateAdapter(TwoSpeakers(), window=1600, overlap=400)
    assert adapter.output == OutputSpec.audio(2)
    pipeline = BlockPipeline(adapter.open, 16000, 16000, adapter.output, block=160)
    engine = BlockEngine(pipeline.process, 160, adapter.output, policy="wait", restart=pipeline.reset).start()
    wav = np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.1
    latency = engine.delay + pipeline.latency
    out = drive(engine, wav, tail_blocks=latency // 160 + 1)
    engine.stop()
    wav = remove_dc(wav, 16000)  # what the model is given
    np.testing.assert_allclose(out[0, latency:latency + 8000], 0.25 * wav, atol=1e-6)
    np.testing.assert_allclose(out[1, latency:latency + 8000], -wav, atol=1e-6)


class ShufflingBands(torch.nn.Module):
    """Stand-in separator: the bands below / above 700 Hz, in a random order at every call."""
    sample_rate = 8000

    def separate(self, wav):
        from test_separation import band_separator
        return band_separator(wav)


def test_live_separation_keeps_each_speaker_on_one_output():
    from test_separation import two_talkers

    from audiokit.metrics import pit_si_snr, si_snr
    torch.manual_seed(0)
    sources = two_talkers(20)  # 8 kHz
    adapter = SeparateAdapter(ShufflingBands(), window=8000, overlap=2000)
    stream = adapter.open()
    mix = sources.sum(0)
    out = torch.cat([stream.feed(chunk[None]) for chunk in mix.split(80)] + [stream.flush()], -1)[:, 0]
    assert out.shape == sources.shape
    _, perm = pit_si_snr(sources, out)
    pieces = sources.unflatten(-1, (20, -1))
    per_second = si_snr(pieces, out[list(perm)].unflatten(-1, (20, -1)))
    assert float(per_second[pieces.pow(2).sum(-1) > 1].min()) > 30  # the same order whenever a talker talks


def test_separation_adapter_rejects_a_model_without_separate():
    with pytest.raises(Exception, match="not a separation model"):
        SeparateAdapter(tiny_causal_frcrn())


def test_overload_is_counted_and_the_engine_recovers_at_the_same_delay():
    """A clocked driver (10 ms blocks at real time); blocks 30-39 take 35 ms each, the rest are instant."""
    block, spike = 160, range(30, 40)
    seen = []

    def process(x):
        seen.append(len(seen))
        if len(seen) - 1 in spike:
            import time
            time.sleep(0.035)
        return (0.5 * x)[None]

    engine = BlockEngine(process, block, policy="bypass", bypass=lambda x: x[None], queue_blocks=4,
                         delay_blocks=3).start()
    wav = np.random.default_rng(3).standard_normal(160 * block).astype(np.float32) * 0.1
    out = drive(engine, wav, realtime=True, rate=16000)[0]
    engine.stop()
    c = engine.counters
    assert c.blocks == 160
    assert c.underruns > 0 and (c.skipped + c.overruns + c.late) > 0
    # every slot holds either the processed or the bypassed input, never anything else, and at the same delay
    delayed = np.concatenate([np.zeros(engine.delay, np.float32), wav])[:len(out)]
    blocks_out, blocks_in = out.reshape(-1, block), delayed.reshape(-1, block)
    processed = np.all(np.isclose(blocks_out, 0.5 * blocks_in, atol=1e-7), axis=1)
    bypassed = np.all(np.isclose(blocks_out, blocks_in, atol=1e-7), axis=1)
    assert np.all(processed | bypassed)
    assert bypassed[engine.delay_blocks:].sum() == c.underruns  # the first slots are the zero prefill
    assert processed[-30:].all(), "after the spike every block is processed again"


def test_stream_files_are_deleted_when_a_write_fails(tmp_path):
    from audiokit.cli.live_files import Taps
    from audiokit.errors import AudioError

    taps = Taps(tmp_path / "rec.wav", [tmp_path / "new" / "s1.flac", tmp_path / "new" / "s2.wav"], 16000, 160)

    def full_disk(k, samples):
        raise OSError(28, "No space left on device")

    taps.files.write_file = full_disk
    for seq in range(3000):  # more than the queue holds: the writer keeps draining after the failure
        taps.put(seq, np.zeros(160, np.float32), np.zeros((2, 160), np.float32))
    with pytest.raises(AudioError, match="rec.wav: writing failed: .*No space left on device"):
        taps.close()
    assert list(tmp_path.iterdir()) == []  # no outputs, temporary files or new folders
    good = Taps(None, [tmp_path / "a.flac"], 16000, 160)
    good.put(0, None, np.full((1, 160), 0.5, np.float32))
    good.close()
    assert sf.info(tmp_path / "a.flac").format == "FLAC" and sf.info(tmp_path / "a.flac").frames == 160


def test_stream_options_beyond_the_machine_are_refused(capsys):
    """--threads above the cores (100000 crashed torch) and a --delay-blocks queue beyond 10 s (a billion blocks
    hung) are one-line errors, before any device or model is touched (issue 18)."""
    import os

    from audiokit.cli.main import main

    cores = len(os.sched_getaffinity(0))
    cases = {("--threads", "100000"): f"error: --threads 100000: this machine has {cores} cores for it",
             ("--delay-blocks", "1000000"): "error: --delay-blocks 1000000: 1000000 blocks of 10 ms is more than 10 s "
                                            "of delay",
             ("--delay-blocks", "101", "--block-ms", "100"): "error: --delay-blocks 101: 101 blocks of 100 ms is more "
                                                             "than 10 s of delay",
             ("--style", "waltz"): "error: --style waltz: not used by stream enhance",
             ("--threshold", "0.5"): "error: --threshold 0.5: not used by stream enhance",
             ("--atten-lim", "nan"): "error: --atten-lim nan: must be a number of dB, at least 0"}
    for options, line in cases.items():
        assert main(["stream", "enhance", *options]) == 1
        assert capsys.readouterr().err == line + "\n"
