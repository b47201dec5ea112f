"""Separation: speaker mixtures, PIT training, long-audio windows, CLI, PIT scoring, pretrained families."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.metrics import pit_si_snr, si_snr
from audiokit.streaming.separation import WindowedSeparation, WindowedSeparator, align_sources
from audiokit.tasks.augment import Mixer
from audiokit.tasks.mixtures import SpeakerMixtureDataset, speaker_of

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes/separation/mossformer2_ss_8k_small.yaml"
RATE = 8000


def voice(seconds, rate, f0, seed):
    """Harmonic tone with a random on/off syllable envelope (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    on = np.repeat(rng.random(int(seconds * 4) + 1) > 0.3, rate // 4)[: t.size]
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))
    return (0.1 * sig * on + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """speech/<speaker>/ folders (4 speakers), LibriSpeech-named files, a noise file."""
    root = tmp_path_factory.mktemp("sep")
    for i, name in enumerate(["alice", "bob", "carol"]):
        (root / "speech" / name).mkdir(parents=True)
        for j in range(2):
            sf.write(root / "speech" / name / f"u{j}.wav", voice(1.5, 16000, 100 + 60 * i, 10 * i + j), 16000)
    (root / "speech/libri").mkdir()
    sf.write(root / "speech/libri/103-1240-0000.flac", voice(1.5, RATE, 330, 99), RATE)
    (root / "noise").mkdir()
    sf.write(root / "noise/n.wav", (0.05 * np.random.default_rng(1).standard_normal(RATE)).astype(np.float32), RATE)
    return root


def mixtures(corpus, **args):
    settings = dict(sample_rate=RATE, segment_seconds=1.0, epoch_size=8, seed=3,
                    mixer=Mixer(reverb_prob=0.0), holdout_speakers=["libri:103"])
    return SpeakerMixtureDataset([corpus / "speech"], [corpus / "noise"], **{**settings, **args})


def test_speaker_ids_from_file_names():
    assert speaker_of(Path("x/libri251/103-1240-0000.flac")) == "libri:103"
    assert speaker_of(Path("an4/an4test_clstk/fvap/cen1-fvap-b.wav")) == "fvap"
    assert speaker_of(Path("arctic/cmu_arctic_us_aew_a0001.flac")) == "arctic:aew"
    assert speaker_of(Path("fsdd/recordings/3_jackson_12.flac")) == "fsdd:jackson"
    assert speaker_of(Path("tts/espeak_en-gb_s001.flac")) == "tts:espeak_en-gb"


def test_mixture_is_the_sum_of_different_speakers(corpus):
    data = mixtures(corpus)
    assert set(data.speakers) == {"alice", "bob", "carol"}  # the held-out speaker is not trained on
    for i in range(len(data)):
        item = data[i]
        assert item["clean"].shape == (2, RATE) and item["noisy"].shape == (RATE,)
        assert len(set(item["speakers"])) == 2
        torch.testing.assert_close(item["noisy"], item["clean"].sum(0), atol=1e-5, rtol=1e-4)
    again = mixtures(corpus)[5]
    assert torch.equal(again["noisy"], data[5]["noisy"])  # a pure function of (seed, epoch, index)


def test_relative_levels_noise_three_speakers_and_heldout(corpus):
    data = mixtures(corpus, num_speakers=3, relative_db=(-6.0, 6.0), noise_prob=1.0, epoch_size=6)
    levels = []
    for i in range(len(data)):
        item = data[i]
        assert item["clean"].shape[0] == 3 and np.isfinite(item["snr_db"])
        residual = item["noisy"] - item["clean"].sum(0)  # the noise
        assert float(residual.pow(2).mean()) > 0
        rms = item["clean"].pow(2).mean(-1).sqrt()
        levels += (20 * torch.log10(rms[1:] / rms[0])).tolist()
    assert max(levels) - min(levels) > 3  # random relative levels
    heldout = mixtures(corpus, split="heldout", num_speakers=1)
    assert list(heldout.speakers) == ["libri:103"]
    with pytest.raises(ValueError, match="1 speaker"):
        mixtures(corpus, split="heldout", num_speakers=2)


def band_separator(x):
    """Stand-in separator [B, T] -> [B, 2, T]: below / above 700 Hz, in a random order per call."""
    spec = torch.fft.rfft(x)
    low = torch.fft.rfftfreq(x.shape[-1], 1 / RATE) < 700
    out = torch.stack([torch.fft.irfft(spec * low, n=x.shape[-1]), torch.fft.irfft(spec * ~low, n=x.shape[-1])], 1)
    return out[:, torch.randperm(2)]


def two_talkers(seconds):
    t = torch.arange(int(seconds * RATE)) / RATE
    g = torch.Generator().manual_seed(0)
    gate = lambda: (torch.rand(int(seconds * 2) + 1, generator=g) > 0.3).repeat_interleave(RATE // 2)[: t.numel()]  # noqa: E731
    return torch.stack([torch.sin(2 * np.pi * 200 * t) * gate(), 0.5 * torch.sin(2 * np.pi * 1500 * t) * gate()])


def test_long_audio_keeps_each_speaker_on_one_output():
    torch.manual_seed(0)
    sources = two_talkers(90)
    mix = sources.sum(0, keepdim=True)
    stream = WindowedSeparation(band_separator, window=4 * RATE, overlap=RATE, num_spks=2)
    outs = []
    for chunk in mix.split(3001, -1):
        outs.append(stream.feed(chunk))
        assert stream.pending.shape[-1] < 4 * RATE  # bounded: never more than a window held
    out = torch.cat(outs + [stream.flush()], -1)[0]
    assert out.shape == sources.shape
    _, perm = pit_si_snr(sources, out)
    per_minute_half = si_snr(sources.unflatten(-1, (6, -1)), out[list(perm)].unflatten(-1, (6, -1)))
    assert float(per_minute_half.min()) > 30  # the same order in every 15 s stretch, first to last


def test_silent_overlaps_are_bridged_by_voice():
    """Both talkers pause over every window overlap: the overlap cannot decide, their spectra do."""
    torch.manual_seed(2)
    sources = two_talkers(60)
    t = torch.arange(sources.shape[-1]) / RATE
    sources = sources * ((t % 3) >= 1.0)  # windows of 4 s every 3 s overlap on [3k, 3k + 1): silent there
    stream = WindowedSeparation(band_separator, window=4 * RATE, overlap=RATE, num_spks=2)
    out = torch.cat([stream.feed(sources.sum(0, keepdim=True)), stream.flush()], -1)[0]
    _, perm = pit_si_snr(sources, out)
    pieces = sources.unflatten(-1, (20, -1))
    per_window = si_snr(pieces, out[list(perm)].unflatten(-1, (20, -1)))
    assert float(per_window[pieces.pow(2).sum(-1) > 1].min()) > 30  # every stretch where the talker talks


def test_alignment_picks_the_matching_order():
    ref = torch.randn(3, 2, 500)
    est = torch.cat([ref, torch.randn(3, 2, 300)], -1)[:, [1, 0]]
    aligned = align_sources(ref, est)
    torch.testing.assert_close(aligned[..., :500], ref)


def test_short_input_and_bad_window():
    stream = WindowedSeparation(band_separator, window=RATE, overlap=RATE // 4, num_spks=2)
    assert stream.feed(torch.zeros(1, 100)).shape == (1, 2, 0)
    assert stream.flush().shape == (1, 2, 100)
    with pytest.raises(ValueError, match="overlap"):
        WindowedSeparation(band_separator, window=100, overlap=100)
    lengths = []
    stream = WindowedSeparation(lambda x: lengths.append(x.shape[-1]) or band_separator(x), RATE, RATE // 4, 2)
    out = torch.cat([stream.feed(torch.randn(1, 2 * RATE + 123)), stream.flush()], -1)
    assert out.shape == (1, 2, 2 * RATE + 123) and set(lengths) == {RATE}  # the last call sees a whole window too


class BandModel(torch.nn.Module):
    sample_rate, num_spks = RATE, 2

    def separate(self, wav):
        return band_separator(wav)


def test_shift_averaging_aligns_speakers_before_averaging():
    from audiokit.errors import ModelError
    from audiokit.streaming.separation import averaged_over_shifts

    torch.manual_seed(3)
    sources = two_talkers(2)
    lengths = []

    def recording(wav):
        lengths.append(wav.shape[-1])
        return band_separator(wav)                           # sources in a random order per call

    assert averaged_over_shifts(band_separator, 1, 16) is band_separator
    out = averaged_over_shifts(recording, 4, 16)(sources.sum(0, keepdim=True))
    assert lengths == [sources.shape[-1] + d for d in (0, 4, 8, 12)]
    assert out.shape == (1, 2, sources.shape[-1])
    score, _ = pit_si_snr(sources.numpy(), out[0].numpy())
    assert score > 20                                        # swapped copies would average to half the mix
    for shifts in (0, 17):
        with pytest.raises(ModelError, match="shifts must be from 1 to the model's hop"):
            averaged_over_shifts(band_separator, shifts, 16)


def test_batch_files_get_consistent_speaker_outputs(tmp_path):
    from audiokit.cli.batch import process_files

    torch.manual_seed(1)
    sources = two_talkers(20)
    sf.write(tmp_path / "talk.wav", sources.sum(0).numpy() * 0.5, 16000 // 2)
    status = process_files([tmp_path / "talk.wav"], tmp_path / "out", "separated",
                           WindowedSeparator(BandModel(), 3.0, 1.0), RATE, progress=False)
    assert status == 0
    outs = np.stack([sf.read(tmp_path / f"out/talk_s{k}.wav")[0] for k in (1, 2)])
    assert outs.shape == (2, sources.shape[-1])
    score, _ = pit_si_snr(sources.numpy() * 0.5, outs)
    assert score > 25


def test_python_api_separates_arrays_and_files(tmp_path):
    import audiokit
    from audiokit.errors import AudioError, ModelError, ModelKindError

    torch.manual_seed(2)
    sources = two_talkers(6)
    mix = sources.sum(0)
    out = audiokit.separate(mix.numpy(), RATE, model=BandModel())
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, mix.numel())
    assert pit_si_snr(sources.numpy(), out)[0] > 20
    stereo = audiokit.separate(torch.stack([mix, 0.5 * mix]), 2 * RATE, model=BandModel(), shifts=2)
    assert isinstance(stereo, torch.Tensor) and stereo.shape == (2, 2, mix.numel())
    torch.testing.assert_close(stereo[:, 1], 0.5 * stereo[:, 0], atol=1e-5, rtol=0)
    sf.write(tmp_path / "talk.wav", mix.numpy(), RATE)
    written = audiokit.separate_file(tmp_path / "talk.wav", tmp_path / "out", model=BandModel())
    assert [p.name for p in written] == ["talk_s1.wav", "talk_s2.wav"] and all(p.is_file() for p in written)
    with pytest.raises(AudioError, match="talk_s1.wav: exists, use force=True"):
        audiokit.separate_file(tmp_path / "talk.wav", tmp_path / "out", model=BandModel())
    written[1].unlink()
    written[1].mkdir()                                        # never replaced, nor half a set written
    before = written[0].read_bytes()
    with pytest.raises(AudioError, match="talk_s2.wav: exists and is not a file"):
        audiokit.separate_file(tmp_path / "talk.wav", tmp_path / "out", model=BandModel(), force=True)
    assert written[0].read_bytes() == before and written[1].is_dir()
    with pytest.raises(AudioError, match="NaN"):
        audiokit.separate(np.full(100, np.nan, np.float32), RATE, model=BandModel())
    with pytest.raises(ModelError, match="not a separation model"):
        audiokit.separate(mix, RATE, model=torch.nn.Identity())
    with pytest.raises(ModelKindError, match="BandModel is a separation model, not an enhancer"):
        audiokit.enhance(mix, RATE, model=BandModel())


def test_pit_scoring_of_folders_and_evaluate_cli(tmp_path, capsys):
    from audiokit.cli.main import main
    from audiokit.metrics.separation import score_separated_folders

    rng = np.random.default_rng(0)
    for sub in ("ref", "est", "mix"):
        (tmp_path / sub).mkdir()
    refs = 0.1 * rng.standard_normal((2, RATE)).astype(np.float32)
    for k in (0, 1):
        sf.write(tmp_path / f"ref/a_s{k + 1}.wav", refs[k], RATE)
        sf.write(tmp_path / f"est/a_s{2 - k}.wav", refs[k] + 0.01 * rng.standard_normal(RATE).astype(np.float32), RATE)
    sf.write(tmp_path / "mix/a.wav", refs.sum(0), RATE)
    sf.write(tmp_path / "ref/b_s1.wav", refs[0], RATE)
    sf.write(tmp_path / "ref/b_s2.wav", refs[1], RATE)
    sf.write(tmp_path / "est/b_s1.wav", refs[0], RATE)  # one estimate missing
    errors = []
    scores = score_separated_folders(tmp_path / "ref", tmp_path / "est", tmp_path / "mix", on_error=errors.append)
    assert list(scores) == ["a"] and scores["a"]["si_snr"] > 15 and scores["a"]["si_snri"] > 15
    assert len(errors) == 1 and "b_s" in str(errors[0])
    status = main(["evaluate", "--separated", "--clean", str(tmp_path / "ref"), "--estimate", str(tmp_path / "est"),
                   "--mixture", str(tmp_path / "mix")])
    captured = capsys.readouterr()
    assert status == 1 and "si_snri" in captured.out and "1 references" not in captured.err and "b_s1" in captured.err


def test_separated_scoring_resamples_references_and_names_what_cannot_be_scored(tmp_path, capsys):
    from audiokit.errors import AudioError
    from audiokit.metrics.separation import score_separated_folders

    rng = np.random.default_rng(1)
    for sub in ("ref", "est", "plain", "short", "est/sub"):
        (tmp_path / sub).mkdir()
    refs = 0.1 * rng.standard_normal((2, 2 * RATE)).astype(np.float32)
    sf.write(tmp_path / "ref/a_s1.wav", refs[0], RATE)
    sf.write(tmp_path / "ref/a_s2.wav", refs[1, ::2], RATE // 2)      # the same signal at half the rate
    sf.write(tmp_path / "est/a_s1.wav", refs[0], RATE)
    sf.write(tmp_path / "est/a_s2.wav", refs[1, ::2], RATE // 2)
    sf.write(tmp_path / "ref/b_s1.wav", refs[0], RATE)
    sf.write(tmp_path / "ref/b_s2.wav", np.zeros(RATE, np.float32), RATE)  # silent reference
    sf.write(tmp_path / "est/b_s1.wav", refs[0], RATE)
    sf.write(tmp_path / "est/b_s2.wav", refs[1], RATE)
    for k in (1, 2):
        sf.write(tmp_path / f"ref/c_s{k}.wav", refs[k - 1], RATE)
    for k in (1, 3):                                                  # numbered unlike the references
        sf.write(tmp_path / f"est/c_s{k}.wav", refs[k // 2], RATE)
    errors = []
    scores = score_separated_folders(tmp_path / "ref", tmp_path / "est", on_error=errors.append)
    assert list(scores) == ["a"] and scores["a"]["si_snr"] > 40       # mixed rates: the same audio scores as such
    assert sorted(str(e).split(": ", 1)[1] for e in errors) == [
        "is silent: SI-SNR against it is undefined",
        f"references c_s[1, 2], but estimates c_s[1, 3] in {tmp_path / 'est'}"]
    errors.clear()
    sf.write(tmp_path / "plain/a.wav", refs[0], RATE)                  # audio, but no <stem>_s<k> names
    assert score_separated_folders(tmp_path / "plain", tmp_path / "est", on_error=errors.append) == {}
    assert len(errors) == 1 and "holds no references <stem>_s<k>" in str(errors[0])
    errors.clear()
    for k in (1, 2):                                                  # truncated estimates are not scored
        sf.write(tmp_path / f"ref/d_s{k}.wav", refs[k - 1], RATE)
        sf.write(tmp_path / f"short/d_s{k}.wav", refs[k - 1, :160], RATE)
    assert score_separated_folders(tmp_path / "ref", tmp_path / "short", on_error=errors.append) == {}
    assert str(errors[-1]).endswith("d_s1.wav: 0.020 s long, its reference 2.000 s: not an estimate of it")
    sf.write(tmp_path / "est/sub/a_s1.wav", refs[0], RATE)          # two files claim one source
    with pytest.raises(AudioError, match="a_s1.wav: the same source as"):
        score_separated_folders(tmp_path / "ref", tmp_path / "est")
    from audiokit.cli.main import main
    assert main(["evaluate", "--separated", "--clean", str(tmp_path / "ref"), "--estimate", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path}: holds, or is inside, the --clean folder; "
                                       "the two must be apart\n")


def tiny_separator(**changes):
    from audiokit.models.mossformer2 import MossFormer2Separator

    torch.manual_seed(0)
    return MossFormer2Separator(**{**dict(in_channels=16, out_channels=16, num_blocks=1, kernel_size=16,
                                          sample_rate=RATE), **changes}).eval()


def test_pretrained_separator_round_trip_and_cli_errors(tmp_path, capsys):
    from audiokit.cli.main import main
    from audiokit.hub.pretrained import load_model, save_pretrained
    from audiokit.hub.registry import family_of

    model = tiny_separator(num_blocks=2)  # two attention layers share one rotary table
    path = save_pretrained(model, tmp_path / "sep.safetensors", family_of(model), model.config)
    loaded = load_model(str(path))
    wav = torch.randn(1, 2000)
    torch.testing.assert_close(loaded.separate(wav), model.separate(wav))
    sf.write(tmp_path / "m.wav", 0.1 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32), RATE)
    assert main(["separate", str(tmp_path / "m.wav"), "--model", str(path), "--num-speakers", "3"]) == 1
    assert "separates 2 speakers" in capsys.readouterr().err
    assert main(["separate", str(tmp_path / "m.wav"), "--model", str(path)]) == 0
    assert (tmp_path / "m_s1.wav").is_file() and (tmp_path / "m_s2.wav").is_file()
    assert main(["separate", str(tmp_path / "m.wav"), "--model", str(path)]) == 1  # no overwrite
    assert "exists" in capsys.readouterr().err
    # a folder run skips the outputs of an earlier one; a clip of a few samples still separates
    sf.write(tmp_path / "few.wav", np.full(5, 0.01, np.float32), RATE)
    assert main(["separate", str(tmp_path), "--model", str(path), "-o", str(tmp_path / "out"), "--shifts", "2"]) == 0
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["few_s1.wav", "few_s2.wav", "m_s1.wav", "m_s2.wav"]
    assert sf.info(tmp_path / "out/few_s1.wav").frames == 5
    capsys.readouterr()
    # option errors: one line before any work
    for options, problem in ((["--device", "gpu"], "--device gpu: not a torch device"),
                             (["--window", "inf"], "need finite lengths"),
                             (["--shifts", "0"], "shifts must be from 1 to the model's hop (8 samples)"),
                             (["--model", str(tmp_path / "nope.safetensors")], "nope.safetensors: "),
                             (["--window", "1", "--overlap", "0.00001"], "here 0 and 8000 samples"),
                             (["-o", str(tmp_path / "m.wav")], "m.wav: is not a folder")):
        assert main(["separate", str(tmp_path / "m.wav"), "--model", str(path), *options]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and err.count("\n") == 1, err
    # --force never replaces a folder standing where an output would go, nor writes half a set
    (tmp_path / "out/m_s1.wav").unlink()
    (tmp_path / "out/m_s1.wav").mkdir()
    before = (tmp_path / "out/m_s2.wav").read_bytes()
    assert main(["separate", str(tmp_path / "m.wav"), "--model", str(path), "-o", str(tmp_path / "out"),
                 "--force"]) == 1
    assert "m_s1.wav: exists and is not a file" in capsys.readouterr().err
    assert (tmp_path / "out/m_s2.wav").read_bytes() == before
    assert main(["enhance", str(tmp_path / "m.wav"), "--model", str(path)]) == 1
    expected = f"error: {path}: MossFormer2Separator is a separation model, not an enhancer (use separate)\n"
    assert expected in capsys.readouterr().err


def test_init_from_reads_pretrained_and_ddp_files(tmp_path):
    """init_from takes what the hub reader takes: a pretrained .safetensors and a DDP-prefixed torch file."""
    from audiokit.errors import CheckpointError
    from audiokit.hub.pretrained import save_pretrained
    from audiokit.hub.registry import family_of
    from audiokit.tasks.train import load_initial_weights

    trained = tiny_separator()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    pretrained = save_pretrained(trained, tmp_path / "sep.safetensors", family_of(trained), trained.config)
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "ddp.ckpt")
    wav = torch.randn(1, 1600)
    for path in (pretrained, tmp_path / "ddp.ckpt"):
        fresh = tiny_separator()
        load_initial_weights(fresh, path)
        with torch.no_grad():
            torch.testing.assert_close(fresh(wav), trained(wav))
    with pytest.raises(CheckpointError, match="sep.safetensors: does not fit the model: .*missing keys"):
        load_initial_weights(tiny_separator(num_blocks=2), pretrained)
    with pytest.raises(CheckpointError, match="nothing.ckpt: no such checkpoint file"):
        load_initial_weights(tiny_separator(), tmp_path / "nothing.ckpt")


def test_separation_recipe_trains_with_pit(corpus, tmp_path):
    from audiokit.tasks.train import train

    def run(epochs):
        return train(RECIPE, ["--output_folder", str(tmp_path / "run"), "--number_of_epochs", str(epochs),
                              "--speech_folders", f"[{corpus / 'speech'}]", "--noise_folders", f"[{corpus / 'noise'}]",
                              "--rir_folders", "[]", "--extra_speech", "[]", "--holdout_speakers", "[]",
                              "--segment_seconds", "[0.4, 0.5]", "--epoch_size", "4", "--valid_size", "2",
                              "--channels", "16", "--num_blocks", "1", "--num_speakers", "3", "--valid_fraction", "0",
                              "--noprogressbar", "--device", "cpu"])

    run(1)
    out = run(2)  # resumes: only epoch 2 runs
    with open(out / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert np.isfinite(float(rows[0]["valid_si_snr"])) and np.isfinite(float(rows[0]["noisy_si_snr"]))
    weights = torch.load(sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt")
    assert weights["mask_net.conv1d_out.weight"].shape[0] == 3 * 16  # three speakers


def test_grow_separator_names_a_bad_run_and_writes_nothing(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    from grow_separator import main as grow

    assert grow([str(tmp_path), str(tmp_path / "deep.ckpt"), "--num-blocks", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "hyperparams.yaml" in err and "\n" not in err
    assert not list(tmp_path.glob("deep.ckpt*"))


@pytest.mark.slow
def test_deepened_run_starts_from_the_trained_separator(corpus, tmp_path):
    """tools/grow_separator.py adds identity block pairs; the recipe's init_from starts a run from them."""
    sys.path.insert(0, str(REPO / "tools"))
    from grow_separator import main as grow

    from audiokit.errors import CheckpointError
    from audiokit.hub.export import find_run_checkpoint
    from audiokit.nn.checkpoint import read_state_dict
    from audiokit.tasks.train import load_initial_weights, train

    def run(folder, *extra):
        return train(RECIPE, ["--output_folder", str(folder), "--number_of_epochs", "1",
                              "--speech_folders", f"[{corpus / 'speech'}]", "--noise_folders", "[]",
                              "--rir_folders", "[]", "--extra_speech", "[]", "--holdout_speakers", "[]",
                              "--segment_seconds", "[0.4, 0.5]", "--epoch_size", "4", "--valid_size", "2",
                              "--channels", "16", "--valid_fraction", "0", "--noprogressbar", "--device", "cpu",
                              *extra])

    shallow = run(tmp_path / "shallow", "--num_blocks", "1")
    assert grow([str(shallow), str(tmp_path / "deep.ckpt"), "--num-blocks", "2"]) == 0
    trained = read_state_dict(find_run_checkpoint(shallow)[0] / "model.ckpt")
    one, two = tiny_separator(kernel_size=32), tiny_separator(kernel_size=32, num_blocks=2)
    one.load_state_dict(trained)
    load_initial_weights(two, tmp_path / "deep.ckpt")
    wav = torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(two(wav), one(wav))
    with pytest.raises(CheckpointError, match="deep.ckpt: does not fit the model"):
        load_initial_weights(one, tmp_path / "deep.ckpt")
    # wider and deeper at once: twice the channels, the same output
    assert grow([str(shallow), str(tmp_path / "wide.ckpt"), "--channels", "32", "--num-blocks", "2",
                 "--noise", "0"]) == 0
    wide = tiny_separator(kernel_size=32, num_blocks=2, in_channels=32, out_channels=32)
    load_initial_weights(wide, tmp_path / "wide.ckpt")
    with torch.no_grad():
        torch.testing.assert_close(wide(wav), one(wav), atol=1e-5, rtol=1e-4)
    assert grow([str(shallow), str(tmp_path / "odd.ckpt"), "--channels", "24"]) == 1
    assert not list(tmp_path.glob("odd.ckpt*"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt: is a text file, not a checkpoint file"):
        load_initial_weights(one, tmp_path / "junk.ckpt")

    deep = run(tmp_path / "deep", "--num_blocks", "2", "--init_from", str(tmp_path / "deep.ckpt"))
    weights = torch.load(find_run_checkpoint(deep)[0] / "model.ckpt")
    added = weights["mask_net.mdl.intra_mdl.mossformerM.layers.1.to_out.mdl.1.weight"]
    assert 0 < float(added.abs().max()) < 0.02  # zero-started and moved by two steps (a fresh init is ~0.1)


def test_pit_loss_ignores_source_order():
    from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

    from audiokit.tasks.separation import mixture_si_snr

    sources = torch.randn(2, 3, 800)
    estimates = sources + 0.1 * torch.randn_like(sources)
    loss = get_si_snr_with_pitwrapper(sources.transpose(1, 2), estimates.transpose(1, 2))
    swapped = get_si_snr_with_pitwrapper(sources.transpose(1, 2), estimates[:, [2, 0, 1]].transpose(1, 2))
    torch.testing.assert_close(loss, swapped)
    assert float(loss.max()) < -15
    baseline = mixture_si_snr(sources.sum(1), sources)
    assert baseline.shape == (2,) and float(baseline.max()) < 0  # each source is a third of the mixture


@pytest.mark.slow
def test_one_hour_at_16k_stays_under_2gb(tmp_path):
    """`process_files` + WindowedSeparator over one hour of 16 kHz audio, peak RSS measured in a child."""
    script = f"""
import resource, numpy as np, soundfile as sf, torch
torch.set_num_threads(1)
from audiokit.cli.batch import process_files
from audiokit.streaming.separation import WindowedSeparator
path = {str(tmp_path / 'hour.wav')!r}
with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
    for minute in range(60):
        f.write((0.1 * np.random.default_rng(minute).standard_normal(16000 * 60)).astype(np.float32))
class Halves(torch.nn.Module):
    sample_rate, num_spks = 16000, 2
    def separate(self, wav):
        return torch.stack([wav * 0.5, wav * 0.5], 1)
assert process_files([path], {str(tmp_path / 'out')!r}, "separated", WindowedSeparator(Halves(), 8.0, 1.0),
                     16000, progress=False) == 0
# this process's own high-water mark (ru_maxrss inherits pytest's)
print(int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 2 * 1024 ** 2  # kB
    assert sf.info(tmp_path / "out/hour_s2.wav").frames == 16000 * 3600


PARITY = REPO.parent / "shared" / "parity"


@pytest.mark.skipif(not PARITY.is_dir(), reason="../shared/parity is absent")
def test_official_checkpoints_by_our_names():
    import json

    from audiokit.hub.clearvoice import load_clearvoice
    from audiokit.hub.pretrained import load_model
    from audiokit.models.mossformer2 import MossFormer2Enhancer, MossFormer2Separator

    for name, folder, cls in [("mossformer2_se_48k", "mossformer2_se_48k_small", MossFormer2Enhancer),
                              ("mossformer2_ss_16k", "mossformer2_ss_16k_small", MossFormer2Separator)]:
        args = json.loads((PARITY / folder / "config.json").read_text())["constructor_args"]
        model = load_model(name, checkpoint=PARITY / folder / "checkpoint.pt", config=args)
        official = {"mossformer2_se_48k": "MossFormer2_SE_48K", "mossformer2_ss_16k": "MossFormer2_SS_16K"}[name]
        reference = load_clearvoice(official, PARITY / folder / "checkpoint.pt", **args)
        assert isinstance(model, cls)
        for key, value in reference.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key


def test_newbob_on_decibels_anneals_only_when_stalled():
    from audiokit.tasks.schedulers import DecibelNewBobScheduler

    scheduler = DecibelNewBobScheduler(initial_value=1e-3, improvement_threshold=0.0025, annealing_factor=0.5,
                                       patient=0)
    rates = [scheduler(-snr)[1] for snr in (1.0, 1.5, 2.0, 4.0)]  # SI-SNR rising: keep the rate
    assert rates == [1e-3] * 4
    assert scheduler(-4.0)[1] == 5e-4  # no gain: anneal
