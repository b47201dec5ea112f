"""Dance generation: spectrum features, the DanceGenerator model, its task and recipe (tiny sizes)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml

from audiokit.audio.features import frame_log_power
from audiokit.models.dance import POSE_DIM, DanceGenerator, poses_from_positions, positions_from_poses

TINY = dict(sample_rate=8000, n_fft=64, hop_length=80, context=4, conv_channels=(4,), hidden=16,
            encoder_layers=2, fsmn_order=3, embedding_dim=8, decoder_hidden=16, decoder_layers=2, style_dim=4)


def tiny_model(encoder="lstm", **kwargs):
    torch.manual_seed(0)
    return DanceGenerator(encoder=encoder, **{**TINY, **kwargs}).eval()


def test_frame_log_power_is_causal_and_cuts_like_the_whole():
    wav = torch.randn(8000)
    whole = frame_log_power(wav, 8000, n_fft=64, hop_length=80, context=4)
    assert whole.shape == (25, 4 * 33)
    per = 320
    window = frame_log_power(wav[5 * per - 400:12 * per], 8000, n_fft=64, hop_length=80, context=4, lead=400)
    torch.testing.assert_close(window, whole[5:12])
    changed = wav.clone()
    changed[10 * per:] = torch.randn(len(wav) - 10 * per)  # the future changes: frames before 10 do not
    torch.testing.assert_close(frame_log_power(changed, 8000, n_fft=64, hop_length=80, context=4)[:10], whole[:10])
    with pytest.raises(ValueError):
        frame_log_power(wav, 16000, frame_rate=30.0)


def test_pose_representation_round_trip():
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(10, 23, 3)).astype(np.float32) * 20 + [100.0, 90.0, -50.0]
    poses = poses_from_positions(positions)
    assert poses.shape == (10, POSE_DIM) and poses[0, -2:].tolist() == [0.0, 0.0]
    start = positions[0, [7, 16]].mean(0)[[0, 2]]
    np.testing.assert_allclose(positions_from_poses(poses, start), positions, atol=1e-3)


@pytest.mark.parametrize("encoder", ["lstm", "fsmn"])
def test_forward_generate_and_step_agree(encoder):
    model = tiny_model(encoder)
    spec = torch.randn(2, 9, model.feature_dim)
    poses = torch.randn(2, 9, POSE_DIM)
    style = torch.tensor([0, 3])
    pred, emb = model(spec, poses, style=style)
    assert pred.shape == (2, 8, POSE_DIM) and emb.shape == (2, 9, 8)
    # fed its own output everywhere, the training pass is the generation from the same first pose
    free, _ = model(spec, poses, torch.zeros(8, dtype=torch.bool), style=style)
    generated = model.generate(spec, poses[:, 0], style)
    torch.testing.assert_close(free, generated[:, 1:])
    torch.testing.assert_close(generated[:, 0], poses[:, 0])
    # all teacher frames through the auto-conditioning loop = plain teacher forcing; a mix differs from both
    teacher, _ = model(spec, poses, torch.ones(8, dtype=torch.bool), style=style)
    torch.testing.assert_close(teacher, pred)
    mixed, _ = model(spec, poses, torch.tensor([1, 1, 0, 0, 1, 1, 0, 0], dtype=torch.bool), style=style)
    torch.testing.assert_close(mixed[:, :2], pred[:, :2])
    assert not torch.allclose(mixed[:, 2:], pred[:, 2:]) and not torch.allclose(mixed[:, 4:], free[:, 4:])
    # streaming in chunks of 1, 3 and 5 frames, state explicit
    state = model.start(poses[:, 0], style)
    chunks = []
    for a, b in ((0, 1), (1, 4), (4, 9)):
        out, state = model.step(spec[:, a:b], state)
        chunks.append(out)
    torch.testing.assert_close(torch.cat(chunks, 1), generated)


def test_style_and_registry():
    from audiokit.hub.registry import family_class, family_of
    model = tiny_model()
    assert family_class("dance_lstm") is DanceGenerator and family_of(model) == "dance_lstm"
    spec = torch.randn(1, 5, model.feature_dim)
    waltz, anyone = model.generate(spec, style="waltz"), model.generate(spec)
    assert waltz.shape == (1, 5, POSE_DIM) and not torch.allclose(waltz[:, 1:], anyone[:, 1:])
    # "auto": picked from the music frame by frame, causally: streaming gives the same
    auto = model.generate(spec, style="auto")
    assert not torch.allclose(auto[:, 1:], anyone[:, 1:])
    state, chunks = model.start(style="auto"), []
    for a, b in ((0, 2), (2, 5)):
        out, state = model.step(spec[:, a:b], state)
        chunks.append(out)
    torch.testing.assert_close(torch.cat(chunks, 1), auto)
    assert model.style_logits(torch.zeros(1, 3, 8)).shape == (1, 3, 4)
    plain = DanceGenerator(**{**TINY, "num_styles": 0})
    assert plain.style is None and plain.generate(spec).shape == (1, 5, POSE_DIM)
    positions = model.dance(np.zeros(8000 * 2, np.float32), style=1)
    assert positions.shape == (50, 23, 3) and np.isfinite(positions).all()


# ---------------------------------------------------------------- task and recipe

def write_dance(folder, frames: int = 120, rate: int = 8000, seed: int = 0):
    """A synthetic dance folder in the dataset's layout: a body swaying to a click track."""
    import json

    import soundfile as sf
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rest = rng.normal(size=(23, 3)) * 15 + [0.0, 40.0, 0.0]
    rest[[7, 16]] = [[-10.0, 0.0, 0.0], [10.0, 0.0, 0.0]]
    rest[[10, 11, 19, 20], 1] = -85.0
    t = np.arange(frames) / 25.0
    sway = np.sin(2 * np.pi * 1.5 * t)[:, None, None] * [5.0, 2.0, 0.0]
    skeletons = rest[None] + sway + rng.normal(size=(frames, 23, 3)) * 0.3
    center = np.stack([t * 10, np.full(frames, 90.0), np.zeros(frames)], 1)
    (folder / "skeletons.json").write_text(json.dumps({"length": frames, "center": center.tolist(),
                                                       "skeletons": skeletons.tolist()}))
    (folder / "config.json").write_text(json.dumps({"start_position": 0, "end_position": frames}))
    audio = rng.normal(size=frames * rate // 25) * 0.01
    audio[::rate * 2 // 3] = 0.9
    sf.write(folder / "audio.wav", audio.astype(np.float32), rate)


@pytest.fixture(scope="module")
def dances(tmp_path_factory):
    root = tmp_path_factory.mktemp("dances")
    for i, name in enumerate(["DANCE_C_1", "DANCE_W_2", "DANCE_R_3", "DANCE_T_4"]):
        write_dance(root / name, seed=i)
    return root


SPEC = dict(sample_rate=8000, n_fft=64, hop_length=80, context=4)


def test_dance_windows_split_augment_and_features(dances):
    from audiokit.tasks.dance import DanceWindows, contrastive_loss, motion_beats, teacher_schedule
    held = dict(valid_dances=["DANCE_R_3"], test_dances=["DANCE_T_4"])
    train = DanceWindows(dances, "train", **held, **SPEC, window_frames=32, epoch_size=6, mirror_prob=0.5,
                         noise_prob=0.5)
    valid = DanceWindows(dances, "valid", **held, **SPEC, window_frames=32)
    assert [d["name"] for d in train.dances] == ["DANCE_C_1", "DANCE_W_2"] and len(train) == 6
    assert [d["name"] for d in valid.dances] == ["DANCE_R_3"] and len(valid) == 3
    item = valid[1]  # frames 32-63: its spectra are those of the whole song at those frames
    whole = valid.features(valid.dances[0]["audio"])
    torch.testing.assert_close(item["spec"], whole[32:64])
    assert item["poses"].shape == (32, 72) and item["style"] == 1 and item["beats"].dtype == torch.bool
    again = train[3]
    torch.testing.assert_close(again["spec"], train[3]["spec"])  # an item is a function of (seed, epoch, index)
    pose_mean, pose_std, spec_mean, spec_std = train.stats()
    assert pose_mean.shape == (72,) and spec_std.shape == (4 * 33,) and (pose_std > 0).all()
    # beats: a body swaying at 1.5 Hz turns 3 times a second
    beats = motion_beats(np.sin(2 * np.pi * 1.5 * np.arange(100) / 25)[:, None, None] * np.ones((1, 23, 3)))
    assert 10 <= beats.sum() <= 13
    assert teacher_schedule(12, 2, 3).tolist() == [1, 1, 0, 0, 0] * 2 + [1, 1]
    emb = torch.zeros(1, 4, 2)
    assert float(contrastive_loss(emb, torch.tensor([[0, 0, 0, 0]]))) == 0.0
    assert float(contrastive_loss(emb, torch.tensor([[0, 1, 0, 0]]))) > 0.0


def tiny_recipe(dances, folder, **overrides) -> dict:
    """Overrides of the dance recipe for a one-epoch run of a tiny model on the synthetic ``dances``."""
    return {"output_folder": str(folder), "data_root": str(dances), "valid_dances": ["DANCE_R_3"],
            "test_dances": ["DANCE_T_4"], **SPEC, "window_frames": 24, "epoch_size": 4, "batch_size": 2,
            "number_of_epochs": 1, "hidden": 16, "decoder_hidden": 16, "device": "cpu", **overrides}


RECIPE = "recipes/dance/dance_lstm.yaml"


def test_recipe_trains_one_epoch(dances, tmp_path):
    from pathlib import Path

    from audiokit.tasks.train import train
    out = train(Path(__file__).resolve().parents[1] / RECIPE, tiny_recipe(dances, tmp_path / "run"))
    curve = (out / "learning_curve.csv").read_text().splitlines()
    assert curve[0].startswith("epoch,lr,train_loss,valid_loss,valid_pose_loss") and len(curve) == 2
    assert list((out / "save").glob("CKPT+*/model.ckpt"))
    # the free-running validation: recorded in the curve and the checkpoint, which is kept by it (lowest best)
    row = dict(zip(curve[0].split(","), curve[1].split(",")))
    free = ("free_score", "free_fid_k", "free_beats_ratio", "free_speed_ratio", "free_freeze", "free_bas",
            "free_beat_f")
    assert all(np.isfinite(float(row[f"valid_{name}"])) for name in free)
    meta = yaml.safe_load(next((out / "save").glob("CKPT+*/CKPT.yaml")).read_text())
    assert meta["select_by"] == "free_score" and meta["higher_is_better"] is False
    assert meta["free_score"] == pytest.approx(float(row["valid_free_score"])) and meta["free_score"] >= 0
    from audiokit.models.dance import DanceGenerator
    state = torch.load(next((out / "save").glob("CKPT+*/model.ckpt")), weights_only=True)
    assert not torch.equal(state["pose_std"], torch.ones(72))  # the statistics are saved with the weights
    assert DanceGenerator(**{**SPEC, "hidden": 16, "decoder_hidden": 16}).load_state_dict(state)


@pytest.mark.parametrize("overrides, problem", [
    ({"free_valid": False}, "select_by free_score needs the free-running validation"),
    ({"valid_style": "salsa"}, "valid_style salsa: must be null or any, auto, known or one of")])
def test_recipe_refuses_a_free_score_it_cannot_compute(dances, tmp_path, overrides, problem):
    from pathlib import Path

    from audiokit.errors import AudiokitError
    from audiokit.tasks.train import train
    with pytest.raises(AudiokitError, match=re.escape(problem)):
        train(Path(__file__).resolve().parents[1] / RECIPE, tiny_recipe(dances, tmp_path / "run", **overrides))
    assert not list((tmp_path / "run").glob("learning_curve.csv"))  # refused before training


def test_streaming_context_runs_the_model_frame_by_frame():
    from audiokit.nn.state import streaming
    model = tiny_model("fsmn")
    spec = torch.randn(1, 7, model.feature_dim)
    with streaming(model):
        frames = [model(spec[:, t:t + 1]) for t in range(7)]
    torch.testing.assert_close(torch.cat(frames, 1), model.generate(spec))


def test_tempo_augmentation_retimes_music_and_motion_together(dances):
    import torchaudio.functional as AF

    from audiokit.tasks.dance import DanceWindows
    data = DanceWindows(dances, "train", valid_dances=["DANCE_R_3"], test_dances=["DANCE_T_4"], **SPEC,
                        window_frames=16, epoch_size=4, tempo_prob=1.0, tempo=(0.8, 1.25))
    assert all(data[i]["spec"].shape == (16, 4 * 33) for i in range(4))
    dance = data.dances[0]
    positions, audio = data._retimed(dance, 10, 2.0)  # twice as fast: every other frame, every other sample
    np.testing.assert_allclose(positions, dance["positions"][10:42:2], atol=1e-5)
    per = data.per_frame
    assert len(audio) == data.lead + 16 * per
    halved = AF.resample(dance["audio"], 200, 100)
    middle = slice(data.lead + 4 * per, data.lead + 12 * per)
    reference = halved[10 * per // 2 - data.lead:][:len(audio)]
    torch.testing.assert_close(audio[middle], reference[middle], atol=1e-3, rtol=0)


def test_pretrained_file_round_trip(tmp_path):
    from audiokit.hub.pretrained import load_model, save_pretrained
    model = tiny_model("fsmn")
    model.set_stats(np.full(72, 2.0), np.full(72, 3.0), np.zeros(model.feature_dim), np.ones(model.feature_dim))
    path = save_pretrained(model, tmp_path / "dance.safetensors", "dance_lstm", model.config, {"data": "test"})
    loaded = load_model(str(path))
    assert isinstance(loaded, DanceGenerator) and loaded.config == model.config
    spec = torch.randn(1, 6, model.feature_dim)
    torch.testing.assert_close(loaded.generate(spec, style="auto"), model.generate(spec, style="auto"))


def test_a_model_file_whose_frames_are_not_whole_samples_is_refused(tmp_path):
    """A model file saying 16001 Hz at 25 fps (or 0 fps) is refused on loading, naming the file; it was taken and
    then every music file failed with a ValueError of the spectra."""
    import json

    from audiokit.errors import CheckpointError
    from audiokit.hub.pretrained import load_model, read_metadata, save_pretrained
    model = tiny_model()
    for changes, problem in (({"sample_rate": 16001}, "25 frames per second are not whole samples at 16001 Hz"),
                             ({"fps": 0}, "fps must be a positive number")):
        path = save_pretrained(model, tmp_path / f"dance{len(changes)}{problem[:2]}.safetensors", "dance_lstm",
                               {**model.config, **changes})
        assert json.dumps(read_metadata(path)["config"])  # (the file itself is well formed)
        with pytest.raises(CheckpointError, match=re.escape(f"{path}: bad configuration for dance_lstm: {problem}")):
            load_model(str(path))


def swaying_poses(frames: int = 80, shift: int = 0) -> torch.Tensor:
    """Denormalised pose vectors ``[1, frames, 72]`` of a body swaying at 1.25 Hz (its speed dips every 10
    frames), delayed by ``shift`` frames, and its weak beat labels."""
    from audiokit.models.dance import poses_from_positions
    from audiokit.tasks.dance import motion_beats
    t = (np.arange(frames) - shift) / 25.0
    rest = np.random.default_rng(0).normal(size=(23, 3)) * 15
    positions = rest[None] + np.sin(2 * np.pi * 1.25 * t)[:, None, None] * [6.0, 1.0, 3.0]
    return torch.from_numpy(poses_from_positions(positions))[None], torch.from_numpy(motion_beats(positions))[None]


def test_beat_loss_wants_the_body_slowest_on_the_beats():
    from audiokit.models.dance import poses_from_positions
    from audiokit.motion.kinematics import mean_joint_speed
    from audiokit.tasks.dance import beat_loss, pose_speed
    on_beat, beats = swaying_poses()
    assert int(beats.sum()) >= 5
    assert float(beat_loss(on_beat, beats)) == pytest.approx(0.0, abs=1e-6)  # slowest on every labelled beat
    for shift in (3, 5):  # the same motion, late: the labelled frames are no longer the slowest
        late, _ = swaying_poses(shift=shift)
        assert float(beat_loss(late, beats)) > 0.2
    assert float(beat_loss(on_beat, torch.zeros_like(beats))) == 0.0  # no labels, no loss
    # the speed is the evaluation's (world positions, root motion included), and the loss has gradients
    positions = np.cumsum(np.random.default_rng(1).normal(size=(40, 23, 3)), axis=0)
    poses = torch.tensor(poses_from_positions(positions)[None], dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(pose_speed(poses)[0].detach().numpy(), mean_joint_speed(positions, 5), rtol=1e-5)
    beat_loss(poses, torch.ones(1, 40, dtype=torch.bool)).backward()
    assert poses.grad is not None and bool(poses.grad.abs().sum() > 0)


def test_beat_weight_zero_leaves_the_loss_as_it_was():
    import types

    import speechbrain as sb

    from audiokit.models.dance import DanceGenerator
    from audiokit.tasks.dance import DanceBrain, beat_loss
    torch.manual_seed(0)
    model = DanceGenerator(**SPEC, hidden=16, decoder_hidden=16)
    poses, beats = swaying_poses(24)
    batch = {"spec": torch.randn(1, 24, 4 * 33), "poses": poses, "beats": beats, "style": torch.tensor([1])}

    def loss(**hparams):
        brain = DanceBrain.__new__(DanceBrain)  # only what compute_forward / compute_objectives read
        brain.hparams, brain.device = types.SimpleNamespace(**hparams), "cpu"
        brain.modules = torch.nn.ModuleDict({"model": model})
        torch.manual_seed(1)
        predictions = brain.compute_forward(batch, sb.Stage.VALID)
        brain.sums, brain.count = {"pose_loss": 0.0, "contrastive": 0.0, "style_loss": 0.0}, 0
        with torch.no_grad():
            return float(brain.compute_objectives(predictions, batch, sb.Stage.VALID)), predictions, brain.sums

    before, (pred, _, normalised), sums = loss()
    assert loss(beat_weight=0.0)[0] == before and "beat_loss" not in sums
    with_beats, _, sums = loss(beat_weight=0.5)
    with torch.no_grad():
        beat = float(beat_loss(model.denormalise(torch.cat([normalised[:, :1], pred], 1)), beats))
    assert beat > 0 and with_beats == pytest.approx(before + 0.5 * beat) and sums["beat_loss"] == pytest.approx(beat)
