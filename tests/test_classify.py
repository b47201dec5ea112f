"""Keyword classification and spotting: the streaming posterior, the classifier's windows, the spotter's rule,
the API, ``audiokit classify`` and ``audiokit stream classify`` (through the ALSA ``file`` device).

A tiny random-weight LSSLClassifier checks that streaming equals offline; :class:`tiny_model.DCWords`, whose
posteriors are known (a positive offset says "go", a negative one "stop"), checks the detections themselves.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_model import KEYWORDS, DCWords, save_dc_words, save_tiny, save_tiny_lssl, tiny_lssl

import audiokit
from audiokit.audio.resample import resample
from audiokit.cli.main import main
from audiokit.errors import AudioError, ModelError, ModelKindError
from audiokit.hub import registry
from audiokit.streaming.adapters import ClassifyAdapter
from audiokit.streaming.classification import Classifier, Detection, PosteriorStream, Spotter

torch.set_num_threads(1)  # the machine is shared


def offline_posteriors(model, wav: torch.Tensor) -> np.ndarray:
    """``softmax(frame_logits)`` of a whole signal ``[T]``: ``[N, K]``."""
    with torch.no_grad():
        return model.frame_logits(wav[None])[0].softmax(-1).numpy()


def dc_signal(segments, rate: int = 16000) -> np.ndarray:
    """Constant levels ``[(seconds, level), ...]`` one after the other, float32."""
    return np.concatenate([np.full(round(seconds * rate), level, np.float32) for seconds, level in segments])


def write(path, wav: np.ndarray, rate: int = 16000):
    sf.write(path, wav, rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def lssl_file(tmp_path_factory):
    return save_tiny_lssl(tmp_path_factory.mktemp("model") / "tiny_lssl.safetensors")


@pytest.fixture(scope="module")
def dc_file(tmp_path_factory):
    yield save_dc_words(tmp_path_factory.mktemp("model") / "dcwords.safetensors")  # registers the family
    registry.FAMILIES.pop("dcwords")  # other tests list the families


# --- the posterior stream -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("frontend", ["raw", "logmel"])
def test_streamed_posteriors_equal_offline_in_any_chunks(frontend):
    model = tiny_lssl(frontend=frontend)
    wav = 0.1 * torch.randn(8000 + 37)
    stream = PosteriorStream(model)
    outs = [stream.feed(piece[None]) for piece in wav.split([1, 7, 160, 500, 13, 3319, 4037])] + [stream.flush()]
    streamed = torch.cat(outs, dim=2)[0, 0].numpy()
    hop = model.frame_samples
    assert streamed.shape == (-(-len(wav) // hop), 4)  # one frame per hop begun: the last completed with zeros
    expected = offline_posteriors(model, torch.nn.functional.pad(wav, (0, (-len(wav)) % hop)))
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
    np.testing.assert_allclose(streamed.sum(-1), 1, atol=1e-5)
    # through the block pipeline, stereo mixed down, blocks of odd sizes
    frames = np.concatenate(list(Classifier(model).posteriors(torch.stack([wav, wav]).split(999, -1), 16000)))
    np.testing.assert_allclose(frames, expected, atol=1e-5)


def test_a_model_that_is_not_a_classifier_is_refused():
    from tiny_model import tiny_frcrn
    with pytest.raises(ModelKindError, match="FRCRN is not a streaming classifier"):
        Classifier(tiny_frcrn())


# --- offline classification ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16000, 8000])
def test_a_short_clip_is_padded_to_the_window_and_classified_at_its_end(rate):
    model = tiny_lssl()
    clip = 0.2 * torch.randn(rate * 3 // 20)  # 0.15 s, shorter than the 0.25 s window
    result = audiokit.classify(clip, rate, model=model, top_k=4)
    x = resample(clip, rate, 16000) if rate != 16000 else clip
    padded = torch.nn.functional.pad(x, (0, 4000 - len(x)))
    with torch.no_grad():
        expected = model(padded[None])[0].softmax(-1).numpy()
    assert result.end_s == pytest.approx(0.25)
    assert [label for label, _ in result.top] == [KEYWORDS[k] for k in np.argsort(-expected)]
    np.testing.assert_allclose([prob for _, prob in result.top], np.sort(expected)[::-1], atol=1e-5)
    assert (result.label, result.prob) == result.top[0]
    unpadded = offline_posteriors(model, x)[-1]  # what the clip's end alone would say: not the same
    assert np.abs(unpadded - expected).max() > 1e-3


def test_a_model_without_a_window_classifies_the_clip_at_its_last_frame():
    model = tiny_lssl(pool_seconds=None)
    clip = 0.2 * torch.randn(3200 + 5)
    result = audiokit.classify(clip.numpy(), 16000, model=model, top_k=2)
    with torch.no_grad():
        expected = model(clip[None])[0].softmax(-1).numpy()  # the last complete frame
    assert result.end_s == pytest.approx(0.2)
    assert result.prob == pytest.approx(float(expected.max()), abs=1e-5) and len(result.top) == 2


def test_a_long_clip_takes_its_most_confident_full_window_and_words_come_first():
    model = DCWords()
    quiet_go = dc_signal([(1.0, 0), (0.3, 0.1), (1.0, 0)])  # go 0.73, silence 0.91 elsewhere
    result = audiokit.classify(quiet_go, 16000, model=model)
    assert result.label == "go" and result.prob == pytest.approx(0.731, abs=1e-3)
    assert 1.0 < result.end_s <= 1.3
    both = dc_signal([(0.5, 0), (0.3, 0.1), (0.5, 0), (0.3, -0.5), (0.5, 0)])  # stop is the more confident
    result = audiokit.classify(both, 16000, model=model, top_k=2)
    assert result.label == "stop" and result.prob > 0.9999 and 1.3 < result.end_s <= 1.6
    assert result.top[1][0] == "_silence_"
    silence = audiokit.classify(np.zeros(48000, np.float32), 16000, model=model)
    assert silence.label == "_silence_" and silence.prob == pytest.approx(0.909, abs=1e-3)


# --- spotting -----------------------------------------------------------------------------------------------------

def frames_of(*rows):
    """Posterior frames over (go, stop, _unknown_, _silence_) from ``(go, stop)`` pairs (the rest to silence)."""
    return np.array([[go, stop, 0.0, 1 - go - stop] for go, stop in rows], np.float32)


def found(label, prob, start, end):
    return Detection(label, pytest.approx(prob), pytest.approx(start), pytest.approx(end))


def test_the_spotting_rule_on_known_posteriors():
    spotter = Spotter(KEYWORDS, frame_rate=10, threshold=0.8)  # frame i (from 1) ends at i / 10 s
    # go reaches 0.8 at frame 2 and stays at or above half the threshold (0.4) until frame 6
    assert spotter.push(frames_of((0.1, 0), (0.85, 0), (0.95, 0), (0.5, 0.1))) == []
    assert spotter.push(frames_of((0.45, 0), (0.3, 0))) == [found("go", 0.95, 0.2, 0.6)]
    # another word wins while go is still above half: go ends where stop becomes the top class (frame 8) ...
    assert spotter.push(frames_of((0.81, 0), (0.45, 0.5))) == [found("go", 0.81, 0.7, 0.8)]
    # ... stop starts only when it reaches the threshold (frame 9); go takes over on the same frame (11)
    assert spotter.push(frames_of((0.1, 0.85), (0, 0.9), (0.9, 0.05))) == [found("stop", 0.9, 0.9, 1.1)]
    # background classes end nothing by winning and never start a detection
    assert spotter.push(frames_of((0.5, 0))) == []
    assert spotter.push(np.array([[0.3, 0, 0, 0.7], [0, 0, 0.95, 0.05]], np.float32)) == [
        found("go", 0.9, 1.1, 1.3)]
    assert spotter.finish() == []
    # the detection still open at the end ends with the input
    spotter.push(frames_of((0.9, 0)))
    assert spotter.finish() == [found("go", 0.9, 1.5, 1.5)]
    with pytest.raises(ValueError, match="threshold"):
        Spotter(KEYWORDS, 10, threshold=0)
    with pytest.raises(ValueError, match="nothing to spot"):
        Spotter(["_silence_", "_unknown_"], 10)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_spotting_finds_the_known_words_at_their_times(rate):
    wav = dc_signal([(1.0, 0), (0.5, 0.5), (0.5, -0.5), (1.0, 0), (0.3, 0.5), (0.5, 0)], rate)
    found = audiokit.spot(wav, rate, model=DCWords())
    assert [d.label for d in found] == ["go", "stop", "go"]
    starts_ends = [(1.01, 1.51), (1.51, 2.01), (3.01, 3.31)]  # frame end times: the first frame in, the first out
    tolerance = 1e-6 if rate == 16000 else 0.011  # resampled edges may move by a frame
    for detection, (start, end) in zip(found, starts_ends):
        assert detection.start_s == pytest.approx(start, abs=tolerance)
        assert detection.end_s == pytest.approx(end, abs=tolerance)
        assert detection.prob > 0.9999
    assert audiokit.spot(wav, rate, model=DCWords(gain=2.0)) == []  # offsets too weak: nothing reaches 0.8


def test_spotting_the_tiny_lssl_agrees_with_its_offline_posterior():
    from conftest import speechlike
    model = tiny_lssl()
    wav = torch.from_numpy(speechlike(2.0, seed=4)) * 2
    offline = offline_posteriors(model, wav)
    threshold = float(np.quantile(offline[:, :2].max(-1), 0.7))  # words cross it now and then
    spotter = Spotter(KEYWORDS, 1000, threshold)
    expected = spotter.push(offline) + spotter.finish()
    found = list(audiokit.iter_spots(wav.numpy(), 16000, model=model, threshold=threshold))
    assert expected and [(d.label, d.start_s, d.end_s) for d in found] == [
        (d.label, d.start_s, d.end_s) for d in expected]
    np.testing.assert_allclose([d.prob for d in found], [d.prob for d in expected], atol=1e-5)


# --- the API ------------------------------------------------------------------------------------------------------

def test_api_files_and_arrays_agree_and_bad_input_is_refused(tmp_path, lssl_file):
    wav = dc_signal([(0.5, 0), (0.3, 0.5), (0.4, 0)], 8000)
    path = write(tmp_path / "go.wav", np.stack([wav, wav], 1), 8000)  # stereo: mixed down
    classifier = audiokit.load_classifier(DCWords())
    assert audiokit.classify(path, model=classifier) == audiokit.classify(wav, 8000, model=classifier)
    assert audiokit.classify(str(path), model=classifier).label == "go"
    spots = audiokit.iter_spots(path, model=classifier)
    assert not isinstance(spots, list) and [d.label for d in spots] == ["go"]
    assert audiokit.spot(path, model=classifier) == audiokit.spot(torch.from_numpy(wav), 8000, model=classifier)
    assert audiokit.classify(wav, 8000, model=str(lssl_file)).label in KEYWORDS  # a pretrained file
    with pytest.raises(AudioError, match="needs its sample_rate"):
        audiokit.classify(wav, model=classifier)
    with pytest.raises(AudioError, match="only for arrays"):
        audiokit.classify(path, 8000, model=classifier)
    with pytest.raises(AudioError, match="NaN or Inf"):
        audiokit.spot(np.full(100, np.nan, np.float32), 8000, model=classifier)
    with pytest.raises(AudioError, match="no such file"):
        audiokit.classify(tmp_path / "missing.wav", model=classifier)
    with pytest.raises(ModelError, match="top_k"):
        audiokit.classify(wav, 8000, model=classifier, top_k=0)
    with pytest.raises(ModelError, match="threshold"):
        audiokit.iter_spots(wav, 8000, model=classifier, threshold=1.5)  # checked at the call


def test_without_a_shipped_model_the_api_says_so(monkeypatch):
    monkeypatch.setitem(registry.DEFAULT_MODELS, "classify", None)
    with pytest.raises(ModelError, match="no default classify model is shipped yet"):
        audiokit.classify(np.zeros(1600, np.float32), 16000)


# --- audiokit classify --------------------------------------------------------------------------------------------

def test_cli_lines_top_k_and_json(tmp_path, lssl_file, capsys):
    model = tiny_lssl()
    a = write(tmp_path / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(12000).astype(np.float32))
    b = write(tmp_path / "b.wav", 0.1 * np.random.default_rng(1).standard_normal(4000).astype(np.float32))
    assert main(["classify", str(a), str(b), "--model", str(lssl_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, (a, b)):
        expected = audiokit.classify(path, model=model)
        assert line == f"{path}: {expected.label} ({expected.prob:.2f})"
    assert main(["classify", str(a), "--model", str(lssl_file), "--top-k", "3"]) == 0
    assert re.fullmatch(rf"{re.escape(str(a))}: (\S+ \(\d\.\d\d\), ){{2}}\S+ \(\d\.\d\d\)",
                        capsys.readouterr().out.strip())
    assert main(["classify", str(tmp_path), "--model", str(lssl_file), "--json", "--top-k", "2"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["file"] for o in objects] == [str(a), str(b)]
    for o in objects:
        expected = audiokit.classify(o["file"], model=model, top_k=2)
        assert o["label"] == expected.label and o["prob"] == pytest.approx(expected.prob, abs=1e-6)
        assert [t["label"] for t in o["top"]] == [label for label, _ in expected.top]
        assert o["top"][0]["label"] == o["label"]


def test_cli_spot_lines_and_json(tmp_path, dc_file, capsys):
    wav = dc_signal([(1.0, 0), (0.5, 0.5), (0.5, -0.5), (1.0, 0)])
    long = write(tmp_path / "long.wav", wav)
    quiet = write(tmp_path / "quiet.wav", np.zeros(8000, np.float32))
    assert main(["classify", str(long), str(quiet), "--model", str(dc_file), "--spot"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{long}: go (1.00) 1.01-1.51 s", f"{long}: stop (1.00) 1.51-2.01 s"]
    assert f"{quiet}: no word reached 0.8" in err
    assert main(["classify", str(long), "--model", str(dc_file), "--spot", "--json", "--threshold", "0.5"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["file"], o["label"], o["start"], o["end"]) for o in objects] == [
        (str(long), "go", pytest.approx(1.01), pytest.approx(1.51)),
        (str(long), "stop", pytest.approx(1.51), pytest.approx(2.01))]
    assert all(o["prob"] > 0.9999 for o in objects)


def test_cli_bad_inputs_are_one_line_each_and_the_others_are_done(tmp_path, dc_file, capsys):
    (tmp_path / "in").mkdir()
    good = write(tmp_path / "in" / "a.wav", dc_signal([(0.3, 0.5)]))
    (tmp_path / "in" / "b.wav").write_bytes(b"this is not audio at all\n" * 40)
    other = write(tmp_path / "in" / "c.wav", dc_signal([(0.3, -0.5)]))
    missing = tmp_path / "missing.wav"
    assert main(["classify", str(tmp_path / "in"), str(missing), "--model", str(dc_file)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}: go (1.00)", f"{other}: stop (1.00)"]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {missing}: no such file, folder or matching pattern",
                      f"error: {tmp_path / 'in' / 'b.wav'}: not a readable audio file (Format not recognised)"]
    assert main(["classify", str(good), "--model", str(dc_file), "--spot", "--json"]) == 0  # one word, then good
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_cli_refuses_bad_options_and_models(tmp_path, dc_file, monkeypatch, capsys):
    clip = str(write(tmp_path / "a.wav", np.zeros(1600, np.float32)))
    frcrn = str(save_tiny(tmp_path / "frcrn.safetensors"))
    cases = [(["--top-k", "2", "--spot"], "--top-k 2: not used with --spot"),
             (["--threshold", "0.5"], "--threshold 0.5: only used with --spot"),
             (["--spot", "--threshold", "1.5"], "--threshold 1.5: must be a probability in (0, 1]"),
             (["--top-k", "0"], "--top-k 0: must be at least 1")]
    for options, message in cases:
        assert main(["classify", clip, "--model", str(dc_file), *options]) == 1
        assert capsys.readouterr().err.strip() == f"error: {message}"
    assert main(["classify", clip, "--model", frcrn]) == 1
    assert capsys.readouterr().err.strip().startswith(f"error: {frcrn}: FRCRN is not a streaming classifier")
    monkeypatch.setitem(registry.DEFAULT_MODELS, "classify", None)
    assert main(["classify", clip]) == 1
    assert "no default classify model is shipped yet; name one with --model" in capsys.readouterr().err


# --- audiokit stream classify -------------------------------------------------------------------------------------

def test_the_classify_adapter_reports_the_top_class_and_detections():
    adapter = ClassifyAdapter(DCWords(), threshold=0.9)
    assert adapter.output.labels == KEYWORDS and adapter.output.frame_rate == 100
    stream = adapter.open()
    frames = stream.feed(torch.from_numpy(dc_signal([(0.2, 0), (0.3, 0.5), (0.2, 0)]))[None])[:, 0].numpy()
    assert adapter.describe(frames[:, :10]) == "_silence_ 0.91" and adapter.describe(frames[:, :0]) == ""
    assert adapter.events(frames[:, :30]) == [] and adapter.describe(frames[:, :30]).startswith("go 1.00")
    assert adapter.events(frames[:, 30:]) == [Detection("go", pytest.approx(1.0), 0.21, 0.51)]
    assert adapter.end_events() == []
    with pytest.raises(ModelKindError):
        ClassifyAdapter(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_stream_classify_saves_the_offline_posteriors_and_prints_the_detections(tmp_path, lssl_file):
    pytest.importorskip("sounddevice")
    from test_realtime_device import Device, voice

    device = Device(tmp_path)
    rec, save = tmp_path / "rec.wav", tmp_path / "post.npz"
    proc, err, played = device.play(["classify", "--model", lssl_file, "--overload", "wait", "--duration", 1.0,
                                     "--threshold", 0.4, "--json", "--record", rec, "--save", save],
                                    2 * voice(1.0, seed=5))
    assert proc.returncode == 0, err
    assert played is None  # nothing is played
    recorded, _ = sf.read(rec, dtype="float32")
    saved = np.load(save)
    model = tiny_lssl()
    expected = offline_posteriors(model, torch.from_numpy(recorded))
    assert saved["frames"].shape == (1, len(expected), 4) and float(saved["frame_rate"]) == 1000
    assert list(saved["labels"]) == list(KEYWORDS)
    np.testing.assert_allclose(saved["times"], np.arange(1, len(expected) + 1) / 1000)
    np.testing.assert_allclose(saved["frames"][0], expected, atol=1e-5)
    spotter = Spotter(KEYWORDS, 1000, 0.4)
    detections = [d.as_dict() for d in spotter.push(saved["frames"][0]) + spotter.finish()]
    printed = [json.loads(line) for line in proc.out.splitlines()]
    assert detections and printed == [{**d, "prob": pytest.approx(d["prob"], abs=1e-6)} for d in detections]
    assert re.search(r"\| (go|stop|_unknown_|_silence_) \d\.\d\d \|", err[err.index("done:"):])


def test_stream_classify_takes_a_file_as_its_input(tmp_path, lssl_file, capsys):
    """``--input FILE``: the file through the same pipeline, the posteriors those of the whole file, detections
    printed as they are found."""
    from conftest import speechlike
    clip = write(tmp_path / "clip.wav", 2 * speechlike(1.0, seed=5))
    save = tmp_path / "post.npz"
    assert main(["stream", "classify", "--input", str(clip), "--model", str(lssl_file), "--threshold", "0.4",
                 "--json", "--save", str(save)]) == 0
    out, err = capsys.readouterr()
    expected = offline_posteriors(tiny_lssl(), torch.from_numpy(sf.read(clip, dtype="float32")[0]))
    np.testing.assert_allclose(np.load(save)["frames"][0], expected, atol=1e-5)
    spotter = Spotter(KEYWORDS, 1000, 0.4)
    detections = [d.as_dict() for d in spotter.push(expected) + spotter.finish()]
    assert detections and [json.loads(line)["label"] for line in out.splitlines()] == [d["label"] for d in detections]
    assert re.search(r"stream classify: 16000 Hz .* file .*clip\.wav, block 160 \(10\.0 ms\)", err), err
    assert f"frames {len(expected)}" in err.splitlines()[-1]


def test_a_shipped_default_classifier_is_listed_and_used(monkeypatch, tmp_path, capsys):
    import audiokit.hub.pretrained as pretrained

    save_tiny_lssl(tmp_path / "keywords.safetensors")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setitem(registry.DEFAULT_MODELS, "classify", "keywords")
    assert main(["models"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("keywords"))
    assert re.search(r"lssl_classifier\s+16000\s+1\.0 ms .*\(default of classify\)$", row), row
    clip = write(tmp_path / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(4000).astype(np.float32))
    assert main(["classify", str(clip)]) == 0
    expected = audiokit.classify(clip, model=tiny_lssl())
    assert capsys.readouterr().out.strip() == f"{clip}: {expected.label} ({expected.prob:.2f})"
    assert audiokit.classify(clip) == expected
