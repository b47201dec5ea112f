"""Enhancement training: loss, a 2-step run, checkpoint resume, DDP on gloo."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from audiokit.tasks.losses import FRCRNLoss, compress_mask, ideal_complex_mask, si_snr
from audiokit.tasks.train import train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes/enhancement/frcrn_causal_small.yaml"
RATE = 16000


class TinyOutput(NamedTuple):
    spec: torch.Tensor
    wav: torch.Tensor
    mask: torch.Tensor


class TinyEnhancer(torch.nn.Module):
    """Stand-in with the FRCRN interface: a learnable complex gain per frequency bin."""

    def __init__(self, fft_len: int = 256, win_inc: int = 128):
        super().__init__()
        self.fft_len, self.win_inc = fft_len, win_inc
        self.register_buffer("window", torch.hamming_window(fft_len))  # nonzero edges: invertible uncentred
        self.gain = torch.nn.Parameter(torch.zeros(2 * (fft_len // 2 + 1), 1))

    def stft(self, wav):
        spec = torch.stft(wav, self.fft_len, self.win_inc, window=self.window, center=False, return_complex=True)
        return torch.cat([spec.real, spec.imag], dim=1)

    def forward(self, wav):
        spec = self.stft(wav)
        mask = 2 * torch.tanh(self.gain + 0.5).expand_as(spec)
        yr, yi = spec.chunk(2, dim=1)
        mr, mi = mask.chunk(2, dim=1)
        enhanced = torch.cat([yr * mr - yi * mi, yr * mi + yi * mr], dim=1)
        re, im = enhanced.chunk(2, dim=1)
        frames = spec.shape[-1]
        wav_out = torch.istft(torch.complex(re, im), self.fft_len, self.win_inc, window=self.window,
                              center=False, length=(frames - 1) * self.win_inc + self.fft_len)
        return TinyOutput(enhanced, wav_out, mask)


def tone(seconds, rate, f0, seed):
    t = np.arange(int(seconds * rate)) / rate
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.1 * sig + 0.01 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for sub in ("speech", "noise", "rir"):
        (root / sub).mkdir()
    for i in range(3):
        sf.write(root / f"speech/u{i}.wav", tone(1.2, RATE, 110 + 40 * i, i), RATE)
    sf.write(root / "noise/n.flac", 0.05 * np.random.default_rng(5).standard_normal(RATE).astype(np.float32), 8000)
    rir = np.zeros(1600, np.float32)
    rir[0], rir[400], rir[900] = 1.0, 0.4, 0.2
    sf.write(root / "rir/r.wav", rir, RATE)
    return root


def overrides(data, out, epochs=1, epoch_size=4):
    return ["--output_folder", str(out), "--number_of_epochs", str(epochs),
            "--speech_folders", f"[{data / 'speech'}]", "--noise_folders", f"[{data / 'noise'}]",
            "--rir_folders", f"[{data / 'rir'}]", "--extra_speech", "[]",
            "--segment_seconds", "[0.5, 0.8]", "--epoch_size", str(epoch_size), "--valid_size", "2",
            "--batch_size", "2",
            "--num_workers", "0", "--pesq_items", "1", "--model", f"!new:{TinyEnhancer.__module__}.TinyEnhancer",
            "--noprogressbar", "--device", "cpu"]


def curve(out):
    with open(out / "learning_curve.csv") as f:
        return list(csv.DictReader(f))


def test_loss_falls_to_its_minimum_at_the_clean_target():
    torch.manual_seed(0)
    clean = torch.randn(2, 4000)
    noisy = clean + 0.5 * torch.randn(2, 4000)
    window = torch.hann_window(256)
    def spec(x):
        s = torch.stft(x, 256, 128, window=window, center=False, return_complex=True)
        return torch.cat([s.real, s.imag], dim=1)
    loss_fn = FRCRNLoss(si_snr_weight=1.0, mask_weight=1.0)
    ideal = compress_mask(ideal_complex_mask(spec(noisy), spec(clean)))
    losses = [float(loss_fn(a * clean + (1 - a) * noisy, clean, a * ideal, spec(noisy), spec(clean)))
              for a in (0.0, 0.5, 0.9, 1.0)]
    assert losses == sorted(losses, reverse=True)
    assert float(loss_fn.mask_loss(ideal, spec(noisy), spec(clean))) < 1e-10
    assert float(si_snr(clean, clean).min()) > 60
    assert ideal.abs().max() <= 2  # bounded (tanh saturates to exactly 2 in float32)


def test_two_step_run_writes_checkpoint_and_curve(data, tmp_path):
    out = train(RECIPE, overrides(data, tmp_path / "run"))
    ckpts = sorted((out / "save").glob("CKPT+*"))
    assert ckpts and (ckpts[-1] / "model.ckpt").exists() and (ckpts[-1] / "optimizer.ckpt").exists()
    gain = torch.load(ckpts[-1] / "model.ckpt")["gain"]
    assert gain.abs().max() > 0  # two Adam steps moved it away from its zero init
    rows = curve(out)
    assert [r["epoch"] for r in rows] == ["1"]
    assert np.isfinite(float(rows[0]["valid_si_snr"])) and np.isfinite(float(rows[0]["train_loss"]))
    assert 0 < float(rows[0]["valid_stoi"]) <= 1 and float(rows[0]["stoi_below_noisy"]) in (0.0, 1.0)  # 1 item
    meta = (ckpts[-1] / "CKPT.yaml").read_text()  # the recipe keeps checkpoints by validation PESQ
    assert "pesq:" in meta and "si_snr:" in meta and "stoi:" in meta


def test_a_row_with_new_columns_widens_the_curve_file(tmp_path):
    """A run resumed by a version that logs more keeps one header: earlier rows get blanks."""
    from audiokit.tasks.recipe_brain import append_csv_row
    path = tmp_path / "learning_curve.csv"
    append_csv_row(str(path), {"epoch": 1, "valid_pesq": 1.7})
    append_csv_row(str(path), {"epoch": 2, "valid_pesq": 1.8, "valid_stoi": 0.9})
    append_csv_row(str(path), {"epoch": 3, "valid_pesq": 1.9})
    assert path.read_text().splitlines() == ["epoch,valid_pesq,valid_stoi", "1,1.7,", "2,1.8,0.9", "3,1.9,"]


def test_resume_continues_at_next_epoch(data, tmp_path):
    out = tmp_path / "resume"
    train(RECIPE, overrides(data, out, epochs=1))
    first = torch.load(sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt")["gain"]
    train(RECIPE, overrides(data, out, epochs=2))
    assert [r["epoch"] for r in curve(out)] == ["1", "2"]
    log = (out / "log.txt").read_text()
    second_run = log[log.rindex("Beginning experiment"):]
    assert "Going into epoch 2" in second_run and "Going into epoch 1" not in second_run
    latest = torch.load(sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt")["gain"]
    assert not torch.equal(first, latest)


def test_kept_checkpoints_average_into_one_model(data, tmp_path):
    from audiokit.hub.export import average_run_checkpoints

    # the default (2 best and the latest) would keep at most 3 of 4 epochs
    out = train(RECIPE, overrides(data, tmp_path / "kept", epochs=4) + ["--keep_checkpoints", "4"])
    ckpts = sorted((out / "save").glob("CKPT+*"))
    assert len(ckpts) == 4
    state, meta = average_run_checkpoints(out, 4)
    assert sorted(meta["epochs"]) == [1, 2, 3, 4] and meta["pesq"] == sorted(meta["pesq"], reverse=True)
    gains = [torch.load(c / "model.ckpt")["gain"] for c in ckpts]
    torch.testing.assert_close(state["gain"], sum(gains) / 4)


def test_cli_parser_reports_missing_recipe(tmp_path, capsys):
    import argparse

    from audiokit.tasks.train import add_parser, run
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", str(tmp_path / "nope.yaml"), "--batch_size", "4"])
    assert args.overrides == ["--batch_size", "4"]
    assert run(args) == 1
    assert "nope.yaml: recipe not found" in capsys.readouterr().err


def test_bad_overrides_and_mismatched_checkpoints_are_refused_before_writing(data, tmp_path, monkeypatch):
    from audiokit.errors import AudiokitError

    out = train(RECIPE, overrides(data, tmp_path / "run"))
    saved = (out / "hyperparams.yaml").read_text()
    newest = sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt"
    torch.save({"gain": torch.zeros(3, 1)}, newest)                   # a run of another model
    with pytest.raises(AudiokitError, match=r"cannot resume: .*model.ckpt: .*delete .*CKPT"):
        train(RECIPE, overrides(data, out, epochs=2))
    assert (out / "hyperparams.yaml").read_text() == saved               # the run folder is as it was
    valid_0 = [("0" if previous == "--valid_size" else item) for previous, item in
               zip([None] + overrides(data, tmp_path / "v"), overrides(data, tmp_path / "v"))]
    for options, problem in ((overrides(data, tmp_path / "a") + ["--epoch_sizee", "2"],
                              "unknown recipe key 'epoch_sizee'"),
                             (overrides(data, tmp_path / "b", epoch_size=1), "epoch_size 1 < batch_size 2"),
                             (valid_0, "valid_size 0: validation needs at least one item")):
        with pytest.raises(AudiokitError, match=problem):
            train(RECIPE, options)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AudiokitError, match="a file stands in its way"):
        train(RECIPE, overrides(data, tmp_path / "afile"))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(AudiokitError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set"):
        train(RECIPE, overrides(data, out, epochs=2))


@pytest.mark.slow
def test_ddp_two_cpu_processes(data, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=f"{Path(__file__).parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "audiokit.tasks.train", str(RECIPE), *overrides(data, out, epoch_size=8)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["epoch"] for r in curve(out)] == ["1"]  # written once, by rank 0
    assert sorted((out / "save").glob("CKPT+*"))


def test_relative_data_folders_are_taken_from_the_working_directory(data, tmp_path, monkeypatch):
    """As --output_folder is (issue 18): not from the recipe's folder, nor site-packages for a wheel."""
    monkeypatch.chdir(tmp_path)
    options = overrides(data, "run")
    options[options.index("--speech_folders") + 1] = "[nospeech]"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nospeech'}: data folder not found")):
        train(RECIPE, options)


def test_run_options_in_the_recipe_apply_unless_given_on_the_command_line():
    from audiokit.tasks.train import parse_overrides, recipe_run_options
    recipe = Path(__file__).resolve().parents[1] / "recipes/enhancement/frcrn_causal_small.yaml"
    run_opts, _ = parse_overrides(recipe, [])
    assert recipe_run_options(run_opts, {"ckpt_interval_minutes": 5}).ckpt_interval_minutes == 5
    run_opts, _ = parse_overrides(recipe, ["--ckpt_interval_minutes", "2"])
    assert recipe_run_options(run_opts, {"ckpt_interval_minutes": 5}).ckpt_interval_minutes == 2
    run_opts, _ = parse_overrides(recipe, ["--ckpt_interval_steps", "3"])  # one of two exclusive options
    chosen = recipe_run_options(run_opts, {"ckpt_interval_minutes": 5})
    assert (chosen.ckpt_interval_steps, chosen.ckpt_interval_minutes) == (3, 0)


@pytest.mark.slow
def test_bf16_mixed_precision_trains_a_small_causal_frcrn(data, tmp_path):
    """The precision a bf16-capable GPU gets by default, exercised on the CPU (autocast works on both)."""
    args = overrides(data, tmp_path / "bf16")
    args[args.index("--model") + 1] = ("!new:audiokit.models.frcrn.FRCRN {win_len: 320, win_inc: 160, fft_len: 320, "
                                       "channels: 4, fsmn_hidden: 4, causal: true}")
    out = train(RECIPE, args + ["--precision", "bf16"])
    weights = torch.load(sorted((out / "save").glob("CKPT+*"))[-1] / "model.ckpt")
    # master weights
    assert all(w.dtype != torch.bfloat16 and torch.isfinite(w.float()).all() for w in weights.values())
    row = curve(out)[0]
    assert np.isfinite(float(row["train_loss"])) and np.isfinite(float(row["valid_si_snr"]))


def test_compressed_spectrum_loss_weighs_quiet_bins():
    """The spectral term is zero at the target, and a fixed error costs more in a quiet band than in a
    loud one (power-law compression), unlike a plain MSE."""
    torch.manual_seed(0)
    from audiokit.tasks.losses import compressed_spectrum_loss
    clean = torch.zeros(1, 8, 10)  # F = 4 bins: real rows 0-3, imaginary rows 4-7
    clean[:, 0:2], clean[:, 2:4] = 10.0, 0.01  # bins 0-1 loud, bins 2-3 quiet
    loud, quiet = clean.clone(), clean.clone()
    loud[:, 0:2] += 0.05   # an error in the loud bins
    quiet[:, 2:4] += 0.05  # the same error in the quiet bins
    assert float(compressed_spectrum_loss(clean, clean)) < 1e-10
    assert float(compressed_spectrum_loss(quiet, clean)) > 10 * float(compressed_spectrum_loss(loud, clean))
    loss_fn = FRCRNLoss(si_snr_weight=0.0, mask_weight=0.0, spectral_weight=1.0)
    wav = torch.randn(1, 1000)
    assert float(loss_fn(wav, wav, clean_spec=loud, est_spec=quiet)) > 0


def noisy_estimates(seed: int, scales) -> tuple[np.ndarray, list[np.ndarray]]:
    """3 s of speech-like ``clean`` audio and copies of it with white noise of each of ``scales``."""
    clean = 0.3 * speechlike(3.0, RATE).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal(clean.size).astype(np.float32)
    return clean, [clean + scale * noise for scale in scales]


def backward_beside_a_silent_item(loss_fn, estimate, clean):
    """``(batch, refs, loss)``: ``loss_fn`` on a batch of ``estimate`` and a silent item (both against ``clean``),
    back-propagated; asserts that no NaN reached the gradient and that the voiced item got one."""
    batch = torch.from_numpy(np.stack([estimate, np.zeros_like(clean)])).requires_grad_()
    refs = torch.from_numpy(np.stack([clean, clean]))
    loss = loss_fn(batch, refs)
    loss.backward()
    assert torch.isfinite(batch.grad).all() and float(batch.grad[0].abs().sum()) > 0
    return batch, refs, loss


def test_pesq_term_ranks_distortions_like_pesq_and_skips_silent_items():
    """The PESQ-aware term is lower for a cleaner estimate and follows the real PESQ-WB order; silent
    items are left out without a NaN reaching the gradient; with weight 0 the loss is unchanged."""
    from audiokit.metrics import pesq_wb
    clean, estimates = noisy_estimates(0, (0.001, 0.004, 0.02))
    loss_fn = FRCRNLoss(si_snr_weight=0.0, mask_weight=0.0, pesq_weight=1.0)
    ref = torch.from_numpy(clean)[None]
    distances = [float(loss_fn.pesq_loss(torch.from_numpy(e)[None], ref)) for e in estimates]
    scores = [pesq_wb(clean, e, RATE) for e in estimates]
    assert distances[0] < distances[1] < distances[2]
    assert scores[0] > scores[1] > scores[2]
    batch, refs, loss = backward_beside_a_silent_item(loss_fn, estimates[1], clean)
    assert float(loss.detach()) == pytest.approx(distances[1], rel=1e-5)
    plain = FRCRNLoss(si_snr_weight=1.0, mask_weight=0.0)
    with torch.no_grad():
        assert float(plain(batch[:1], refs[:1])) == pytest.approx(-float(si_snr(batch[:1], refs[:1])))


def test_stoi_term_follows_the_stoi_metric_and_skips_silent_items():
    """The intelligibility term is STOI (within 0.05 of pystoi's figure), higher for a cleaner estimate; a silent item
    in the batch is left out without a NaN reaching the gradient, and the term lowers the loss by its weight."""
    from audiokit.metrics import stoi as stoi_metric
    clean, estimates = noisy_estimates(1, (0.01, 0.1, 0.4))
    loss_fn = FRCRNLoss(si_snr_weight=0.0, mask_weight=0.0, stoi_weight=2.0)
    ref = torch.from_numpy(clean)[None]
    terms = [float(loss_fn.stoi(torch.from_numpy(e)[None], ref)) for e in estimates]
    scores = [stoi_metric(clean, e, RATE) for e in estimates]
    assert terms[0] > terms[1] > terms[2]
    assert terms == pytest.approx(scores, abs=0.05)
    _, _, loss = backward_beside_a_silent_item(loss_fn, estimates[1], clean)
    assert float(loss.detach()) == pytest.approx(-2.0 * terms[1], rel=1e-5)


def test_unreadable_newest_checkpoint_is_skipped_for_the_one_before(data, tmp_path, capfd):
    """A torn or garbled newest checkpoint (as older code left after a kill) is reported and the run resumes
    from the newest one that loads; saves leave no partial folder behind."""
    out = tmp_path / "torn"
    train(RECIPE, overrides(data, out, epochs=2))
    first, second = sorted((out / "save").glob("CKPT+*"), key=lambda p: p.stat().st_mtime)
    (second / "optimizer.ckpt").write_bytes(b"garbage")
    (out / "save" / "partial+CKPT+left-by-a-kill").mkdir()
    capfd.readouterr()
    train(RECIPE, overrides(data, out, epochs=3))
    assert f"skipping the incomplete checkpoint {second}" in capfd.readouterr().err
    log = (out / "log.txt").read_text()
    assert "Going into epoch 2" in log[log.rindex("Beginning experiment"):]  # resumed after epoch 1
    assert not list((out / "save").glob("partial+*"))


@pytest.mark.slow
def test_training_resumes_after_kill_9_at_random_moments(data, tmp_path):
    """kill -9 at random points of a run that checkpoints every step (so many kills land inside a save);
    every restart resumes without a traceback and the last one finishes the run."""
    import random
    import signal
    import time
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=f"{Path(__file__).parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "audiokit.tasks.train", str(RECIPE), *overrides(data, out, epochs=20, epoch_size=16),
           "--ckpt_interval_steps", "1"]
    rng = random.Random(0)
    save = out / "save"
    for attempt in range(6):
        before = set(os.listdir(save)) if save.is_dir() else set()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if attempt % 2:  # at a random moment of the run
            time.sleep(rng.uniform(4.0, 9.0))
        else:  # a few milliseconds after a checkpoint folder appears: inside the save
            deadline = time.monotonic() + 120
            while (time.monotonic() < deadline and proc.poll() is None
                   and not (set(os.listdir(save)) - before if save.is_dir() else set())):
                time.sleep(0.0002)
            time.sleep(rng.uniform(0.0, 0.002))
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL and "Traceback" not in output, output[-3000:]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)  # (a loaded machine: minutes)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    assert [r["epoch"] for r in curve(out)][-1] == "20"
    assert not list((out / "save").glob("partial+*"))


def test_every_shipped_recipe_takes_init_from():
    """The README offers ``--init_from`` for every recipe: each must have the key (an override of a key the
    recipe lacks is refused)."""
    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
    assert len(recipes) >= 8
    lacking = [r.name for r in recipes if not re.search(r"^init_from:", r.read_text(), re.M)]
    assert not lacking, f"recipes without init_from: {lacking}"


@pytest.mark.parametrize("higher", [True, False])
def test_export_takes_the_best_checkpoint_in_the_direction_the_brain_ranked_them(tmp_path, higher):
    from speechbrain.utils.checkpoints import Checkpointer

    from audiokit.hub.export import average_run_checkpoints, find_run_checkpoint

    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text("select_by: pose_loss\n")
    layer = torch.nn.Linear(1, 1)
    checkpointer = Checkpointer(run / "save", {"model": layer})
    for epoch, figure in enumerate([0.3, 0.1, 0.2], 1):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        checkpointer.save_checkpoint(meta={"pose_loss": figure, "epoch": epoch, "higher_is_better": higher})
    assert find_run_checkpoint(run)[1]["epoch"] == (1 if higher else 2)
    assert sorted(average_run_checkpoints(run, 2)[1]["epochs"]) == ([1, 3] if higher else [2, 3])


def test_export_can_rank_the_checkpoints_by_another_figure_they_record(tmp_path):
    """``select_by``: a run kept by PESQ exported by its STOI (higher is better) or by its loss (lower); a figure no
    checkpoint records is refused."""
    from speechbrain.utils.checkpoints import Checkpointer

    from audiokit.errors import CheckpointError
    from audiokit.hub.export import average_run_checkpoints, find_run_checkpoint

    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text("select_by: pesq\n")
    layer = torch.nn.Linear(1, 1)
    checkpointer = Checkpointer(run / "save", {"model": layer})
    for epoch, (pesq, stoi, loss) in enumerate([(2.0, 0.80, 3.0), (1.9, 0.85, 1.0), (1.8, 0.83, 2.0)], 1):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        checkpointer.save_checkpoint(meta={"pesq": pesq, "stoi": stoi, "loss": loss, "epoch": epoch,
                                           "higher_is_better": True})
    assert find_run_checkpoint(run)[1]["epoch"] == 1
    assert find_run_checkpoint(run, "stoi")[1]["epoch"] == 2
    assert find_run_checkpoint(run, "loss")[1]["epoch"] == 2
    state, meta = average_run_checkpoints(run, 2, "stoi")
    assert sorted(meta["epochs"]) == [2, 3] and meta["stoi"] == [0.85, 0.83]
    assert float(state["weight"]) == pytest.approx(2.5)
    with pytest.raises(CheckpointError, match="no checkpoint records a 'dnsmos' figure"):
        find_run_checkpoint(run, "dnsmos")


def test_max_minutes_stops_mid_epoch_with_a_checkpoint_and_the_same_command_resumes_there(data, tmp_path, capsys,
                                                                                          monkeypatch):
    """``--max_minutes``: past the limit the run saves SpeechBrain's intra-epoch checkpoint, says so in one line
    and exits 0; the same command again continues that epoch from the saved step (not from its start)."""
    from audiokit.cli.main import main
    steps = []
    forward = TinyEnhancer.forward
    monkeypatch.setattr(TinyEnhancer, "forward",
                        lambda self, wav: (steps.append(1) if torch.is_grad_enabled() else None, forward(self, wav))[1])
    out = tmp_path / "limited"
    args = ["train", str(RECIPE), *overrides(data, out, epochs=2, epoch_size=16)]  # 8 steps an epoch
    assert main([*args, "--max_minutes", "0.0001"]) == 0  # 6 ms: past it at the first step
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("audiokit train:")]
    assert len(printed) == 1 and "stopped on the time limit (0.0001 min) in epoch 1 after step 1" in printed[0]
    assert not (out / "learning_curve.csv").exists()  # no epoch finished
    saved = list((out / "save").glob("CKPT+*"))
    assert len(saved) == 1 and "intra_epoch" in (saved[0] / "CKPT.yaml").read_text()
    assert str(saved[0]) in printed[0] and (saved[0] / "dataloader-TRAIN.ckpt").read_text().strip() == "1"
    assert len(steps) == 1
    steps.clear()
    assert main([*args, "--max_minutes", "30"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"trained: {out}")
    assert len(steps) == 7 + 8  # the rest of epoch 1, then epoch 2
    assert [r["epoch"] for r in curve(out)] == ["1", "2"]


def test_max_minutes_is_checked():
    from audiokit.errors import AudiokitError
    from audiokit.tasks.train import split_max_minutes
    assert split_max_minutes(["--a", "1", "--max_minutes", "2.5"]) == (2.5, ["--a", "1"])
    assert split_max_minutes(["--max_minutes=0"]) == (None, [])  # 0: no limit
    assert split_max_minutes({"max_minutes": 1, "b": 2}) == (1.0, {"b": 2})
    for bad in (["--max_minutes", "soon"], ["--max_minutes", "-1"], ["--max_minutes"]):
        with pytest.raises(AudiokitError):
            split_max_minutes(bad)


def test_the_noise_variations_are_recipe_keys_of_the_training_mixer_only(data, tmp_path):
    """``--noise_speed/--noise_eq_db/--noise_mix_prob/--train_snr_db`` reach the training mixer; validation mixes as
    before."""
    from hyperpyyaml import load_hyperpyyaml

    from audiokit.tasks.train import parse_overrides

    def hparams(*extra):
        _, recipe_overrides = parse_overrides(RECIPE, overrides(data, tmp_path) + list(extra))
        return load_hyperpyyaml(RECIPE.read_text(), recipe_overrides)

    plain = hparams()
    varied = hparams("--noise_speed", "[0.8, 1.25]", "--noise_eq_db", "10", "--noise_mix_prob", "0.3")
    assert (tuple(plain["mixer"].noise_speed), plain["mixer"].noise_eq_db, plain["mixer"].noise_mix_prob) == (
        (1.0, 1.0), 0.0, 0.0)
    assert (tuple(varied["mixer"].noise_speed), varied["mixer"].noise_eq_db, varied["mixer"].noise_mix_prob) == (
        (0.8, 1.25), 10.0, 0.3)
    assert varied["valid_mixer"] == plain["valid_mixer"]
    # the training SNR range is a recipe key too (the recipe's model, and its level normaliser, reach the exported
    # config: tests/test_api.py::test_export_run_takes_the_best_checkpoint)
    wider = hparams("--train_snr_db", "[-2.0, 30.0]")
    assert tuple(plain["mixer"].snr_db) == (-2.0, 20.0) and tuple(wider["mixer"].snr_db) == (-2.0, 30.0)
    assert tuple(wider["valid_mixer"].snr_db) == tuple(plain["valid_mixer"].snr_db) == (0.0, 20.0)
