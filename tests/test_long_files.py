"""Long inputs: files stream block by block in bounded memory and give the model's whole-signal output."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_model import save_tiny, tiny_frcrn

from audiokit.audio.dc import remove_dc
from audiokit.audio.io import read_audio
from audiokit.audio.resample import resample
from audiokit.cli.main import main

torch.set_num_threads(1)  # the machine is shared
TOOLS = Path(__file__).resolve().parents[1] / "tools"


PEAK_KB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"


def _rss_growth_mb(source: Path, model: Path, out: Path) -> float:
    """Peak RSS growth (MB) of enhancing ``source`` in a fresh process, with the model loaded before."""
    sys.path.insert(0, str(TOOLS))
    code = (f"import resource, torch; torch.set_num_threads(1)\n"
            f"from audiokit.cli.main import main\n"
            f"from audiokit.hub.pretrained import load_model; load_model({str(model)!r})\n"
            f"peak = lambda: {PEAK_KB}  # this process's own high-water mark (ru_maxrss inherits pytest's)\n"
            f"base = peak()\n"
            f"assert main(['enhance', {str(source)!r}, '--model', {str(model)!r}, '-o', {str(out)!r}]) == 0\n"
            f"print((peak() - base) / 1024)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


@pytest.mark.slow
def test_minutes_long_file_equals_offline_model_with_bounded_memory(tmp_path):
    sys.path.insert(0, str(TOOLS))
    from long_file_memory import write_long_file

    model = save_tiny(tmp_path / "tiny.safetensors")
    short, long = tmp_path / "one.wav", tmp_path / "six.wav"
    write_long_file(short, 1)
    write_long_file(long, 6)
    growth = {m: _rss_growth_mb(p, model, tmp_path / m) for m, p in (("one", short), ("six", long))}
    assert growth["six"] - growth["one"] < 50, growth
    wav, _ = read_audio(tmp_path / "six" / "six_enhanced.wav")
    source, _ = read_audio(long)
    with torch.no_grad():
        expected = tiny_frcrn().enhance(remove_dc(torch.from_numpy(source), 16000)).numpy().clip(-1, 1)
    np.testing.assert_allclose(wav, expected, atol=1e-4)


@pytest.mark.slow
def test_resampled_long_file_equals_whole_file_resampling(tmp_path):
    rng = np.random.default_rng(1)
    source = tmp_path / "cd.flac"
    sf.write(source, 0.2 * rng.standard_normal((44100 * 25, 2)).astype(np.float32), 44100)
    model = save_tiny(tmp_path / "tiny.safetensors")
    assert main(["enhance", str(source), "--model", str(model)]) == 0  # 10 s blocks: 3 per channel
    wav, _ = read_audio(source)
    with torch.no_grad():
        inner = tiny_frcrn().enhance(resample(remove_dc(torch.from_numpy(wav), 44100), 44100, 16000))
    expected = resample(inner, 16000, 44100)[:, :wav.shape[1]].numpy().clip(-1, 1)
    np.testing.assert_allclose(read_audio(tmp_path / "cd_enhanced.wav")[0], expected, atol=1e-4)
