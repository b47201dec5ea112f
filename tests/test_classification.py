"""Classification task: Speech Commands / FSDD layouts and splits, augmentation, a short recipe run."""
import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.tasks.keyword_data import (
    SILENCE,
    SPEECH_COMMANDS_LABELS,
    UNKNOWN,
    ClipAugment,
    digit_clips,
    digit_split,
    pad_collate,
    speech_commands_clips,
    speech_commands_set,
)
from audiokit.tasks.train import train

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
SPEAKERS = [f"{i:08x}" for i in range(0x1a2b3c00, 0x1a2b3c00 + 40 * 7919, 7919)]


def word(freq: float, seconds: float = 1.0, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.exp(-((t - seconds / 2) / 0.15) ** 2)
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) * envelope + noise).astype(np.float32)


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    """A Speech Commands layout: yes (300 Hz), no (900 Hz), an other word (unknown), background noise."""
    root = tmp_path_factory.mktemp("speech_commands")
    for folder, freq in (("yes", 300), ("no", 900), ("marvin", 2000)):
        (root / folder).mkdir()
        for k, speaker in enumerate(SPEAKERS):
            sf.write(root / folder / f"{speaker}_nohash_0.wav", word(freq * (1 + 0.02 * (k % 5)), seed=k), RATE)
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_/hum.wav", 0.05 * np.random.default_rng(1).standard_normal(5 * RATE), RATE)
    return root


def test_layout_labels_and_speaker_disjoint_splits(commands):
    clips = speech_commands_clips(commands, silence_per_file=4)
    labels = {SPEECH_COMMANDS_LABELS[c.label] for c in clips}
    assert labels == {"yes", "no", UNKNOWN, SILENCE}  # marvin is unknown; silence cut from the background
    sets = {split: speech_commands_set(commands, split, valid_fraction=0.2, test_fraction=0.2, silence_per_file=4)
            for split in ("train", "valid", "test")}
    speakers = {split: {c.speaker for c in ds.clips} for split, ds in sets.items()}
    assert all(speakers.values())
    assert not (speakers["train"] & speakers["test"] or speakers["train"] & speakers["valid"]
                or speakers["valid"] & speakers["test"])
    assert sum(len(ds) for ds in sets.values()) == len(clips)
    item = sets["test"][0]
    assert item["wav"].shape == (RATE,) and item["length"] == RATE
    # extra training data joins the training split only, whatever its speakers' hash
    extra = {split: speech_commands_set(commands, split, valid_fraction=0.2, test_fraction=0.2, silence_per_file=4,
                                        extra_train_data=[commands])
             for split in ("train", "valid", "test")}
    assert len(extra["train"]) == len(sets["train"]) + 3 * len(SPEAKERS)  # every word clip again, no silence
    assert [c.path for c in extra["valid"].clips] == [c.path for c in sets["valid"].clips]
    assert [c.path for c in extra["test"].clips] == [c.path for c in sets["test"].clips]


def test_augmentation_is_reproducible_and_changes_the_clip(commands):
    ds = speech_commands_set(commands, "train", augment=ClipAugment(), noise_folders=[commands / "_background_noise_"])
    plain = speech_commands_set(commands, "train")
    a, b = ds[0]["wav"], ds[0]["wav"]
    assert torch.equal(a, b) and a.shape == plain[0]["wav"].shape
    assert not torch.allclose(a, plain[0]["wav"], atol=1e-3)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["wav"], a)


def test_band_limit_leaves_nothing_above_the_lower_rates_nyquist_frequency():
    """With band_limit_prob 1 the clip keeps its length and its band below 4 kHz but loses what lies above
    (white noise: half its power); with the other augmentations off it is otherwise the clip."""
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal(RATE).astype(np.float32))
    plain = dict(shift_seconds=0.0, gain_db=(0.0, 0.0), speed=(1.0, 1.0), noise_prob=0.0)
    limited = ClipAugment(**plain, band_limit_prob=1.0)(wav.clone(), RATE, np.random.default_rng(0), [])
    untouched = ClipAugment(**plain)(wav.clone(), RATE, np.random.default_rng(0), [])
    assert torch.equal(untouched, wav) and limited.shape == wav.shape
    spectrum = np.abs(np.fft.rfft(limited.numpy())) ** 2
    freqs = np.fft.rfftfreq(RATE, 1 / RATE)
    assert spectrum[freqs > 4500].sum() < 1e-3 * spectrum.sum()  # past the resampler's transition band
    assert 0.4 < float(limited.pow(2).mean() / wav.pow(2).mean()) < 0.55


def test_fsdd_standard_and_leave_one_speaker_out(tmp_path):
    for speaker in ("ann", "bob", "cid"):
        for digit in range(10):
            for index in range(8):
                sf.write(tmp_path / f"{digit}_{speaker}_{index}.wav", word(200 + 50 * digit, 0.3, 8000), 8000)
    clips = digit_clips(tmp_path)
    test = digit_split(clips, "test")
    assert len(test) == 3 * 10 * 5 and all(c.take < 5 for c in test)
    train, valid = digit_split(clips, "train"), digit_split(clips, "valid")
    assert len(train) + len(valid) == 3 * 10 * 3 and not {c.path for c in train} & {c.path for c in valid}
    loso = digit_split(clips, "test", holdout_speaker="bob")
    assert {c.speaker for c in loso} == {"bob"} and len(loso) == 80
    assert "bob" not in {c.speaker for c in digit_split(clips, "train", holdout_speaker="bob")}
    batch = pad_collate([{"wav": torch.ones(3), "label": 1, "length": 3},
                         {"wav": torch.ones(5), "label": 2, "length": 5}])
    assert batch["wav"].shape == (2, 5) and batch["wav"][0, 3:].abs().sum() == 0 and batch["length"].tolist() == [3, 5]


@pytest.mark.slow
def test_recipe_learns_two_words_and_keeps_the_best_by_accuracy(commands, tmp_path):
    out = train(REPO / "recipes/classification/lssl_speech_commands.yaml", [
        "--output_folder", str(tmp_path / "run"), "--data_root", str(commands), "--noise_folders", "[]",
        "--number_of_epochs", "4", "--batch_size", "8", "--num_workers", "0", "--valid_fraction", "0.2",
        "--test_fraction", "0.2", "--lr", "0.005", "--noprogressbar", "--device", "cpu",
        "--model", "!new:audiokit.models.lssl_classifier.LSSLClassifier {num_classes: 12, frontend: logmel, "
                   "channels: 16, state_size: 8, num_layers: 2, pool_seconds: 1.0}"])
    with open(out / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert float(rows[-1]["valid_accuracy"]) > 0.6  # 4 classes: chance is 0.25
    assert "accuracy:" in (sorted((out / "save").glob("CKPT+*"))[-1] / "CKPT.yaml").read_text()


def test_recipe_gain_range_reaches_the_training_augmentation_only(commands, tmp_path):
    """``gain_db`` (top level of the keyword recipe) is the training clips' gain range; validation is not augmented."""
    from audiokit.hub.export import build_recipe_model

    recipe = REPO / "recipes/classification/lssl_speech_commands.yaml"
    text = recipe.read_text().replace("data_root: ../shared/data/speech_commands", f"data_root: {commands}")
    text = text.replace("noise_folders: [../shared/data/noise]", "noise_folders: []")
    (tmp_path / "recipe.yaml").write_text(text.replace("gain_db: [-10.0, 6.0] ", "gain_db: [-35.0, 10.0] "))
    _, hparams = build_recipe_model(tmp_path / "recipe.yaml", tmp_path / "run", keep=("train_set", "valid_set"))
    assert tuple(hparams["train_set"].augment.gain_db) == (-35.0, 10.0)
    assert hparams["valid_set"].augment is None


class SignClassifier(torch.nn.Module):
    """Stand-in: class 0 when the clip's mean is positive, else 1; remembers the rates it was set to."""

    num_classes, sample_rate = 2, 8000

    def __init__(self):
        super().__init__()
        self.rates = []

    def set_rate(self, rate):
        self.rates.append(rate)
        self.sample_rate = rate

    def forward(self, wav, lengths):
        mean = torch.stack([w[:n].mean() for w, n in zip(wav, lengths)])
        return torch.stack([mean, -mean], dim=1)


class Clips(list):
    sample_rate, labels = 8000, ("up", "down")


def test_classification_scores_count_the_confusions_and_restore_the_rate():
    from audiokit.metrics.classification import classification_scores
    clips = Clips([{"wav": torch.full((800,), sign), "label": label, "length": 800}
                   for sign, label in ((1.0, 0), (1.0, 0), (-1.0, 1), (1.0, 1))])  # the last one is wrong
    model = SignClassifier()
    scores = classification_scores(model, clips, batch_size=3)
    assert scores["accuracy"] == 0.75 and scores["confusion"] == [[2, 0], [1, 1]]
    assert scores["per_class"] == {"up": 1.0, "down": 0.5}
    scores = classification_scores(model, clips, rate=16000)
    assert scores["accuracy"] == 0.75 and model.rates == [16000, 8000] and model.sample_rate == 8000


def test_feature_augment_masks_the_front_end_features_in_training_only():
    """The recipe's SpecAugment (``feature_augment``) reaches the model's log-mel features when training and
    never when validating; the model's own features are not changed in place."""
    import speechbrain as sb

    from audiokit.models.lssl_classifier import LSSLClassifier
    from audiokit.tasks.classification import ClassificationBrain

    torch.manual_seed(0)
    model = LSSLClassifier(num_classes=3, frontend="logmel", channels=8, state_size=4, num_layers=1).eval()
    seen = []

    def silence_bands(x):  # a stand-in mask: the upper half of the bands at the features' mean
        seen.append(x.detach().clone())
        x[..., x.shape[-1] // 2:] = x.mean()
        return x

    brain = ClassificationBrain(modules={"model": model}, hparams={"feature_augment": [silence_bands]},
                                run_opts={"device": "cpu"})
    batch = {"wav": torch.randn(2, 4000), "length": torch.tensor([4000, 3000])}
    with torch.no_grad():
        plain = model(batch["wav"], batch["length"])
        assert torch.equal(brain.compute_forward(batch, sb.Stage.VALID), plain) and not seen
        masked = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert len(seen) == 1 and seen[0].shape[-1] == 40
    assert not torch.allclose(masked, plain)
    assert torch.equal(model(batch["wav"], batch["length"]), plain)


def test_mixup_mixes_features_and_loss_by_the_same_weight_in_training_only():
    """``mixup_alpha``: in training each item's front-end features are mixed with its partner's and the loss with
    the partner's label by the same weight; validation sees neither."""
    import speechbrain as sb

    from audiokit.models.lssl_classifier import LSSLClassifier
    from audiokit.tasks.classification import ClassificationBrain, mix_features

    x = torch.arange(12.0).view(3, 2, 2)
    partner, weight = torch.tensor([2, 0, 1]), torch.tensor([1.0, 0.25, 0.5])
    mixed = mix_features(x, partner, weight)
    assert torch.equal(mixed[0], x[0]) and torch.allclose(mixed[1], 0.25 * x[1] + 0.75 * x[0])
    assert torch.allclose(mixed[2], 0.5 * (x[2] + x[1]))

    torch.manual_seed(0)
    model = LSSLClassifier(num_classes=3, frontend="logmel", channels=8, state_size=4, num_layers=1).eval()
    brain = ClassificationBrain(modules={"model": model}, hparams={"mixup_alpha": 0.4}, run_opts={"device": "cpu"})
    batch = {"wav": torch.randn(4, 4000), "length": torch.full((4,), 4000), "label": torch.tensor([0, 1, 2, 0])}
    with torch.no_grad():
        plain = model(batch["wav"], batch["length"])
        assert torch.equal(brain.compute_forward(batch, sb.Stage.VALID), plain)
        logits = brain.compute_forward(batch, sb.Stage.TRAIN)
    partner, weight = brain.mixup
    assert not torch.allclose(logits, plain)
    ce = torch.nn.functional.cross_entropy
    expected = (weight * ce(logits, batch["label"], reduction="none")
                + (1 - weight) * ce(logits, batch["label"][partner], reduction="none")).mean()
    assert torch.allclose(brain.compute_objectives(logits, batch, sb.Stage.TRAIN), expected)
    brain.on_stage_start(sb.Stage.VALID)
    assert torch.allclose(brain.compute_objectives(logits, batch, sb.Stage.VALID), ce(logits, batch["label"]))


def test_reference_cnn_has_the_issues_size_and_learns_a_batch():
    """The card's CNN reference: the issue's 289 k-parameter 3-block log-mel CNN, trainable on waveforms."""
    from audiokit.models.kws_cnn import LogMelCNN
    torch.manual_seed(0)
    model = LogMelCNN(num_classes=2)
    assert abs(sum(p.numel() for p in model.parameters()) - 289_000) < 2_000
    wav, labels = 0.1 * torch.randn(4, 4000), torch.tensor([0, 1, 0, 1])
    wav[labels == 1] *= 5  # louder clips are class 1
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(wav), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 and model(wav).shape == (4, 2)
