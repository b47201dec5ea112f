"""The batch machinery of file-processing subcommands and ``audiokit evaluate``, end to end."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio.dc import remove_dc
from audiokit.audio.io import read_audio
from audiokit.cli.batch import process_files
from audiokit.cli.main import main
from audiokit.errors import ModelError
from audiokit.streaming.outputs import OutputSpec


def half(x: torch.Tensor) -> torch.Tensor:
    assert x.ndim == 1 and x.dtype == torch.float32
    return 0.5 * x


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_folder_with_a_bad_file(make_wav, tmp_path, capsys):
    a = make_wav("in/a.wav")
    b = make_wav("in/sub/b.wav", channels=2, seed=5)
    (tmp_path / "in" / "bad.wav").write_bytes(b"not a wav" * 50)
    status = process_files([tmp_path / "in"], tmp_path / "out", "enhanced", half, 16000, progress=False)
    out, err = capsys.readouterr()
    assert status == 1
    bad = tmp_path / "in" / "bad.wav"
    assert _error_lines(err) == [f"error: {bad}: not a readable audio file (Format not recognised)"]
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_enhanced.wav", "b_enhanced.wav"]
    for source in (a, b):
        wav, _ = read_audio(source)
        result, rate = read_audio(tmp_path / "out" / f"{source.stem}_enhanced.wav")
        assert rate == 16000 and result.shape == wav.shape
        # each channel processed on its own (DC removed first, as always)
        np.testing.assert_allclose(result, 0.5 * remove_dc(wav, 16000), atol=1e-4)
    assert "RTF" in out and "overall RTF" in out


def test_resampled_to_model_rate_and_back(make_wav, tmp_path, capsys):
    source = make_wav("music.wav", seconds=0.37, sample_rate=44100, channels=2)
    seen = []

    def identity(x):
        seen.append(x.shape[0])
        return x.clone()

    assert process_files([source], None, "enhanced", identity, 16000, progress=False) == 0
    wav, _ = read_audio(source)
    result, rate = read_audio(tmp_path / "music_enhanced.wav")  # default: next to the input
    assert seen == [int(np.ceil(wav.shape[1] * 16000 / 44100))] * 2
    assert rate == 44100 and result.shape == wav.shape
    np.testing.assert_allclose(result[:, 500:-500], remove_dc(wav, 44100)[:, 500:-500], atol=0.02)


def test_several_outputs_and_short_outputs(make_wav, tmp_path):
    source = make_wav("mix.flac")
    status = process_files([source], tmp_path / "sep", "separated", lambda x: torch.stack([x, -x])[:, :-7], 8000,
                           progress=False)
    assert status == 0
    mix, _ = read_audio(source)
    s1, _ = read_audio(tmp_path / "sep" / "mix_s1.wav")
    s2, _ = read_audio(tmp_path / "sep" / "mix_s2.wav")
    assert s1.shape == s2.shape == mix.shape
    np.testing.assert_allclose(s1, -s2, atol=1e-4)
    assert np.all(s1[:, -5:] == 0)  # the model's missing tail is padded with silence


def test_never_overwrites_without_force(make_wav, tmp_path, capsys):
    source = make_wav("a.wav")
    assert process_files([source], None, "x", half, 16000, progress=False) == 0
    target = tmp_path / "a_x.wav"
    before = target.read_bytes()
    assert process_files([source], None, "x", lambda x: 0.1 * x, 16000, progress=False) == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {target}: exists, use --force"]
    assert target.read_bytes() == before
    assert process_files([source], None, "x", lambda x: 0.1 * x, 16000, force=True, progress=False) == 0
    assert target.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "a_x.wav"]  # no temp files left


class CountingHalver:
    """Processor factory (``audiokit.streaming.pipeline``) halving its input, counting the files it is opened for;
    with ``fail``, it breaks at the end of each file."""

    output = OutputSpec.audio(1)

    def __init__(self, fail: bool = False):
        self.opened, self.fail = 0, fail

    def open(self, channels: int):
        self.opened += 1
        return self

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x[None]

    def flush(self) -> torch.Tensor:
        if self.fail:  # after the first output samples were written
            raise ModelError("the model broke")
        return torch.zeros(1, 1, 0)


def test_existing_outputs_are_refused_before_the_model_runs(make_wav, tmp_path, capsys):
    source = make_wav("a.wav", seconds=2.5)
    assert process_files([source], None, "x", CountingHalver(), 16000, progress=False) == 0
    again = CountingHalver()
    assert process_files([source], None, "x", again, 16000, progress=False) == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {tmp_path / 'a_x.wav'}: exists, use --force"]
    assert again.opened == 0


def test_a_failed_file_leaves_no_new_folder(make_wav, tmp_path, capsys):
    source = make_wav("a.wav")
    (tmp_path / "old").mkdir()
    for out_dir in (tmp_path / "new" / "deeper", tmp_path / "old"):
        assert process_files([source], out_dir, "x", CountingHalver(fail=True), 16000, progress=False) == 1
        assert _error_lines(capsys.readouterr().err) == [f"error: {source}: the model broke"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "old"]  # made folders gone, others kept
    assert not any((tmp_path / "old").iterdir())


def test_model_errors_and_missing_inputs_are_one_line(make_wav, tmp_path, capsys):
    good = make_wav("good.wav", seconds=1.0)

    def picky(x):
        if x.shape[0] > 9000:
            raise ModelError("input longer than the model's context")
        return x

    short = make_wav("short.wav", seconds=0.25)
    status = process_files([good, short, tmp_path / "ghost.wav", str(tmp_path / "*.mp3")], tmp_path / "o", "e",
                           picky, 16000, progress=False)
    lines = _error_lines(capsys.readouterr().err)
    assert status == 1
    assert lines == [f"error: {tmp_path / 'ghost.wav'}: no such file, folder or matching pattern",
                     f"error: {tmp_path / '*.mp3'}: no such file, folder or matching pattern",
                     f"error: {good}: input longer than the model's context"]
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["short_e.wav"]


def test_bad_model_output_is_reported(make_wav, capsys):
    source = make_wav("a.wav")
    assert process_files([source], None, "x", lambda x: x.reshape(1, 1, -1), 16000, progress=False) == 1
    assert "want [T] or [S, T]" in capsys.readouterr().err


def test_same_stem_in_two_folders_is_not_overwritten(make_wav, tmp_path, capsys):
    first, second = make_wav("a/x.wav"), make_wav("b/x.wav", seed=3)
    assert process_files([first, second], tmp_path / "o", "e", half, 16000, force=True, progress=False) == 1
    assert _error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'o' / 'x_e.wav'}: would be written for both {first} and {second}"]
    np.testing.assert_allclose(read_audio(tmp_path / "o" / "x_e.wav")[0], 0.5 * remove_dc(read_audio(first)[0], 16000),
                               atol=1e-4)


def test_shared_batch_arguments():
    import argparse

    from audiokit.cli.batch import add_batch_arguments

    parser = argparse.ArgumentParser()
    add_batch_arguments(parser, task="enhance")
    args = parser.parse_args(["a.wav", "dir", "-o", "out", "--device", "cuda", "--force"])
    assert args.inputs == ["a.wav", "dir"] and str(args.output_dir) == "out" and args.force
    assert (args.model, args.checkpoint, args.device) == (None, None, "cuda")  # None: the task's default model
    assert "(default: frcrn_causal_small)" in " ".join(parser.format_help().split())


@pytest.fixture
def eval_folders(tmp_path):
    from conftest import speechlike

    (tmp_path / "clean").mkdir()
    (tmp_path / "est").mkdir()
    for i in range(2):
        clean = speechlike(1.5, 16000, seed=i)
        sf.write(tmp_path / "clean" / f"utt{i}.wav", clean, 16000)
        noisy = clean + 0.02 * np.random.default_rng(i).standard_normal(clean.size)
        sf.write(tmp_path / "est" / f"utt{i}_enhanced.wav", noisy, 16000)
    return tmp_path / "clean", tmp_path / "est"


def test_evaluate_json(eval_folders, capsys):
    clean, est = eval_folders
    assert main(["evaluate", "--clean", str(clean), "--estimate", str(est), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["files"]) == ["utt0", "utt1"]
    assert set(report["average"]) == {"pesq_wb", "pesq_nb", "stoi", "si_snr", "sdr"}
    sdrs = [report["files"][name]["sdr"] for name in ("utt0", "utt1")]
    assert report["average"]["sdr"] == pytest.approx(np.mean(sdrs))
    assert 1.0 < report["average"]["pesq_wb"] < 4.5 and 10 < report["average"]["si_snr"] < 40


def test_evaluate_reports_unmatched_and_bad_files(eval_folders, capsys):
    clean, est = eval_folders
    (est / "utt1_enhanced.wav").write_bytes(b"junk" * 100)
    sf.write(clean / "lonely.wav", np.zeros(1600), 16000)
    assert main(["evaluate", "--clean", str(clean), "--estimate", str(est)]) == 1
    out, err = capsys.readouterr()
    assert len(_error_lines(err)) == 2 and "Traceback" not in err
    assert "lonely" in err and "utt1_enhanced.wav: not a readable audio file" in err
    assert out.splitlines()[1].startswith("utt0") and out.splitlines()[-1].startswith("average")


def test_cli_usage_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main(["evaluate", "--clean", str(tmp_path / "nope"), "--estimate", str(tmp_path)]) == 1
    assert _error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'nope'}: no such file, folder or matching pattern"]
    (tmp_path / "est").mkdir()
    (tmp_path / "clean").mkdir()
    assert main(["evaluate", "--clean", str(tmp_path / "clean"), "--estimate", str(tmp_path / "est"),
                 "--dnsmos", str(tmp_path)]) == 1
    assert "DNSMOS" in capsys.readouterr().err
    assert main(["evaluate", "--clean", str(tmp_path), "--estimate", str(tmp_path)]) == 1
    assert "is the --clean folder itself" in capsys.readouterr().err
    for options, problem in ((["--device", "tpu:x"], "--device tpu:x: not a torch device"),
                             (["--stream", "--chunk-ms", "nan"], "--chunk-ms must be a positive number, got nan"),
                             (["--chunk-ms", "10"], "--chunk-ms 10: only used with --stream")):
        assert main(["enhance", str(tmp_path / "any.wav"), *options]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_console_script(eval_folders):
    exe = shutil.which("audiokit")
    if exe is None:
        pytest.skip("the audiokit console script is not installed (pip install -e .)")
    clean, est = eval_folders
    done = subprocess.run([exe, "evaluate", "--clean", str(clean), "--estimate", str(est)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["file", "pesq_wb", "pesq_nb", "stoi", "si_snr", "sdr"]
    broken = subprocess.run([exe, "evaluate", "--clean", str(clean / "missing"), "--estimate", str(est)],
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1 and broken.stderr.strip().startswith("error: ") and "Traceback" not in broken.stderr


def test_evaluate_refuses_silent_references_names_orphans_and_averages_the_same_files(eval_folders, tmp_path,
                                                                                      capsys):
    """issue 18: a silent reference is an error per file (as --separated has it), an estimate without a reference
    is named, and a file with an undefined score (PESQ of a silent estimate) is left out of every column alike."""
    from conftest import speechlike

    clean, est = eval_folders
    sf.write(clean / "quiet.wav", np.zeros(24000, np.float32), 16000)
    sf.write(est / "quiet_enhanced.wav", speechlike(1.5, 16000, seed=7), 16000)
    sf.write(est / "orphan_enhanced.wav", speechlike(1.5, 16000, seed=8), 16000)
    sf.write(est / "utt1_enhanced.wav", np.zeros(24000, np.float32), 16000)  # the model lost everything
    assert main(["evaluate", "--clean", str(clean), "--estimate", str(est), "--json"]) == 1
    out, err = capsys.readouterr()
    assert _error_lines(err) == [
        f"error: {clean / 'quiet.wav'}: is silent: SI-SNR, SDR and PESQ against it are undefined",
        f"error: {est / 'orphan_enhanced.wav'}: no clean file <stem>.* for it in {clean}; not scored"]
    report = json.loads(out)
    assert sorted(report["files"]) == ["utt0", "utt1"] and report["averaged"] == 1
    assert set(report["left_out"]) == {"utt1"} and {"pesq_wb", "pesq_nb"} <= set(report["left_out"]["utt1"])
    assert "note: utt1: pesq_wb, pesq_nb" in err
    for metric, value in report["average"].items():  # every column: utt0 alone
        assert value == pytest.approx(report["files"]["utt0"][metric]), metric


def test_evaluate_separated_names_estimates_without_references(tmp_path, capsys):
    from conftest import speechlike

    for folder, stems in (("ref", ["mix"]), ("est", ["mix", "other"])):
        (tmp_path / folder).mkdir()
        for stem in stems:
            for k in (1, 2):
                sf.write(tmp_path / folder / f"{stem}_s{k}.wav", speechlike(1.0, 8000, seed=k), 8000)
    assert main(["evaluate", "--separated", "--clean", str(tmp_path / "ref"), "--estimate", str(tmp_path / "est")]) == 1
    out, err = capsys.readouterr()
    assert _error_lines(err) == [f"error: {tmp_path / 'est' / 'other_s1.wav'}: no references other_s*.* for it in "
                                 f"{tmp_path / 'ref'}; not scored"]
    assert out.splitlines()[1].startswith("mix")


def test_force_never_writes_over_an_input_of_the_run(make_wav, tmp_path, capsys):
    source, own = make_wav("own/a.wav"), make_wav("own/a_enhanced.wav", seed=7)  # the user's own file
    before = own.read_bytes()
    # the second input named another way: still the same file
    status = process_files([source, tmp_path / "own" / "." / "a_enhanced.wav"], None, "enhanced", half, 16000,
                           force=True, progress=False)
    assert status == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {own}: is also an input; not overwritten"]
    assert own.read_bytes() == before  # read, not replaced
    np.testing.assert_allclose(read_audio(tmp_path / "own" / "a_enhanced_enhanced.wav")[0],
                               0.5 * remove_dc(read_audio(own)[0], 16000), atol=1e-4)
    # folder form: a file named like an output that audiokit did not write is an input, processed and kept
    make_wav("sep/mix.wav")
    user_s1 = make_wav("sep/mix_s1.wav", seed=3)
    before = user_s1.read_bytes()
    split = lambda x: torch.stack([x, -x])  # noqa: E731
    status = process_files([tmp_path / "sep"], None, "separated", split, 16000, force=True, progress=False,
                           outputs_like=r"_s\d+$")
    assert status == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {user_s1}: is also an input; not overwritten"]
    assert user_s1.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "sep").iterdir()) == [
        "mix.wav", "mix_s1.wav", "mix_s1_s1.wav", "mix_s1_s2.wav"]  # nothing of mix.wav written, no temp left
    # outputs audiokit wrote are skipped in folders, and --force replaces them
    user_s1.unlink()
    assert process_files([tmp_path / "sep"], None, "separated", split, 16000, progress=False,
                         outputs_like=r"_s\d+$") == 0
    assert process_files([tmp_path / "sep"], None, "separated", split, 16000, force=True, progress=False,
                         outputs_like=r"_s\d+$") == 0
    assert sorted(p.name for p in (tmp_path / "sep").iterdir()) == [
        "mix.wav", "mix_s1.wav", "mix_s1_s1.wav", "mix_s1_s2.wav", "mix_s2.wav"]
    capsys.readouterr()


def test_api_never_writes_over_its_input(make_wav):
    from tiny_model import tiny_frcrn

    import audiokit
    from audiokit.errors import AudioError

    source = make_wav("a.wav")
    before = source.read_bytes()
    with pytest.raises(AudioError, match="a.wav: is also an input; not overwritten"):
        audiokit.enhance_file(source, source.parent / "." / "a.wav", model=tiny_frcrn(), force=True)
    assert source.read_bytes() == before


class RacingWriter(CountingHalver):
    """Halves its input; at the end of the file another run writes ``names`` (with ``count`` outputs) first."""

    def __init__(self, names, count=1):
        super().__init__()
        self.names, self.output = names, OutputSpec.audio(count)

    def feed(self, x):
        return torch.cat([0.5 * x[None]] * self.output.count)

    def flush(self):
        for name in self.names:
            sf.write(name, np.full(100, 0.25, np.float32), 16000)
        return torch.zeros(self.output.count, 1, 0)


def test_an_output_written_meanwhile_by_another_run_is_not_replaced(make_wav, tmp_path, capsys):
    source = make_wav("a.wav")
    target = tmp_path / "a_x.wav"
    assert process_files([source], None, "x", RacingWriter([target]), 16000, progress=False) == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {target}: exists, use --force"]
    assert read_audio(target)[0].shape == (1, 100)  # the other run's file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "a_x.wav"]  # no temp files left
    # several outputs: all or none (the first, already in place, is taken back)
    target.unlink()
    s2 = tmp_path / "a_s2.wav"
    assert process_files([source], None, "x", RacingWriter([s2], count=2), 16000, progress=False) == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {s2}: exists, use --force"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "a_s2.wav"]
    # with --force the newer run replaces it
    assert process_files([source], None, "x", RacingWriter([target]), 16000, force=True, progress=False) == 0
    np.testing.assert_allclose(read_audio(target)[0], 0.5 * remove_dc(read_audio(source)[0], 16000), atol=1e-4)
