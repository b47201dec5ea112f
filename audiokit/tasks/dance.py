"""Training the dance generator (:class:`~audiokit.models.dance.DanceGenerator`) on real dances.

Data: the dance folders of "Dance with Melody" (``DANCE_<style>_<n>``, read by
:func:`audiokit.motion.dance_data.read_dance`), the music resampled to the model's rate. Whole dances are held
out (:data:`VALID_DANCES`, :data:`TEST_DANCES`): one cha-cha, one rumba and one waltz each for validation and
for test; tango has a single dance (``DANCE_T_5``) in the 36, so it is trained on only. Recipes may name
other folders (``valid_dances`` / ``test_dances``).

An item (:class:`DanceWindows`) is a window of ``window_frames`` motion frames (25 fps) at a random place of a
random training dance (chosen with probability proportional to its length), or, for validation and test,
the consecutive windows of each held-out dance: ``spec [T, F]`` (the causal spectrum windows of the music,
:func:`audiokit.audio.features.frame_log_power`, from the music up to the window's end), ``poses [T, 72]``
(:func:`audiokit.models.dance.poses_from_positions`, not normalised), ``beats [T]`` (weak beat labels from
the motion, :func:`motion_beats`) and ``style`` (0-3: cha-cha, rumba, tango, waltz). Training items are
augmented: mirrored left/right (:func:`audiokit.motion.skeleton.mirror`) with ``mirror_prob``, and white
noise added to the music with ``noise_prob`` at an SNR drawn from ``snr_db`` (the paper's noise training), and
with ``tempo_prob`` played at another tempo (a factor drawn from ``tempo``, music and motion together; the
music is resampled, so its pitch moves with the tempo).

Losses (:class:`DanceBrain`): the mean squared error of the normalised poses, the decoder auto-conditioned
(:func:`teacher_schedule`: runs of ``teacher_frames`` frames fed the true previous pose alternate with runs
of ``free_frames`` fed its own output), plus ``contrastive_weight`` times :func:`contrastive_loss` on
consecutive audio embeddings, plus ``style_weight`` times the cross-entropy of the model's style head (which
lets generation pick the style from the music, ``style="auto"``), plus ``beat_weight`` (default 0: not computed,
the training unchanged) times the kinematic beat loss :func:`beat_loss`.

**Kinematic beat loss** (:func:`beat_loss`): on the predicted poses, denormalised (cm; the window's true first
pose in front, so that every predicted frame has a step into it), the mean joint speed (cm per frame, each
joint's world velocity averaged over ``smooth`` = 5 frames, 200 ms, as the weak labels' :func:`motion_beats`)
should be, at each frame the window's ``beats`` labels mark, a local minimum of its neighbourhood of
``radius`` = 4 frames (+-160 ms) each side. Per labelled beat, ``relu(s_beat - min(s_neighbours)) /
mean(s_window)``: the excess of the speed at the beat over the slowest neighbour, in units of the window's mean
speed (detached; plus 0.1 cm per frame, about 2.5 cm/s, so that a still window does not divide by 0), hence
unitless and 0 when the body is slowest on the beat; averaged over the labelled beats whose whole neighbourhood
lies in the window (0 when there are none). The labels are the real dancer's motion beats (the dancer's own
slow-downs, which the dancers' beat alignment is measured on) rather than music beats: they come with every
window, retimed and mirrored with it, with no beat tracking of 5 s of music (librosa's tracker needs longer
songs and doubled a waltz's tempo at 16 kHz), and they hold the dancer's phase against the music, which the
loss asks the generated motion to keep.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import torchaudio.functional as AF

from audiokit.audio.dc import remove_dc
from audiokit.audio.resample import resample
from audiokit.errors import AudiokitError
from audiokit.models.dance import STYLES, poses_from_positions
from audiokit.motion.dance_data import TEST_DANCES, VALID_DANCES, find_dances, read_dance
from audiokit.motion.kinematics import mean_joint_speed, speed_minima, speed_of_velocities
from audiokit.motion.retime import frames_at
from audiokit.motion.skeleton import mirror
from audiokit.tasks.augment import scale_to_snr
from audiokit.tasks.data import resolve_folder
from audiokit.tasks.recipe_brain import RecipeBrain

TEMPO_STEPS = 100
"""Tempo factors are rounded to 1 / TEMPO_STEPS (the resampling ratio is ``round(factor * 100) / 100``)."""


def motion_beats(positions: np.ndarray, smooth: int = 5) -> np.ndarray:
    """Weak beat labels ``[T]`` (bool) from world positions ``[T, 23, 3]``: a beat where the motion changes
    direction, taken as a local minimum of the mean joint speed (velocities averaged over ``smooth`` frames:
    the body slows to turn; :func:`audiokit.motion.kinematics.speed_minima` with every minimum kept). About
    1.5-2.6 per second in the real dances. (Evaluation counts fewer, deeper ones:
    :func:`audiokit.metrics.dance.motion_beats`.)"""
    beats = np.zeros(len(positions), dtype=bool)
    if len(positions) < 4:
        return beats
    speed = mean_joint_speed(positions, smooth)  # [T - 1], speed[k] between frames k and k + 1
    beats[speed_minima(speed) + 1] = True  # a beat at the frame the slowest step ends
    return beats


def contrastive_loss(embeddings: torch.Tensor, beats: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Margin contrastive loss between consecutive embeddings ``[B, T, E]``: frames ``t - 1`` and ``t`` with no
    beat at ``t`` (same segment of the motion) are pulled together (squared distance), those across a beat
    (``beats[:, t]``) pushed at least ``margin`` apart (squared hinge)."""
    squared = (embeddings[:, 1:] - embeddings[:, :-1]).square().sum(-1)
    distance = squared.add(1e-8).sqrt()  # the epsilon keeps the gradient finite at 0
    across = beats[:, 1:].float()
    loss = (1 - across) * squared + across * (margin - distance).clamp_min(0).square()
    return loss.mean() / 2


BEAT_RADIUS = 4
"""Frames each side of a beat label (160 ms at 25 fps) within which :func:`beat_loss` wants the speed lowest."""
BEAT_SPEED_FLOOR = 0.1
"""cm per frame added to :func:`beat_loss`'s mean speed (about 2.5 cm/s at 25 fps: a still window's scale)."""


def pose_speed(poses: torch.Tensor, smooth: int = 5) -> torch.Tensor:
    """Mean joint speed ``[B, T - 1]`` (cm per frame, element ``k`` the step from frame ``k`` to ``k + 1``) of
    denormalised pose vectors ``[B, T, 72]`` (:mod:`audiokit.motion.poses`), as
    :func:`audiokit.motion.kinematics.mean_joint_speed` of their world positions: each joint's world velocity
    (its step relative to the root plus the root's, height and horizontal) through
    :func:`~audiokit.motion.kinematics.speed_of_velocities`. Differentiable."""
    joints = (poses.shape[-1] - 3) // 3
    relative = poses[..., :joints * 3].unflatten(-1, (joints, 3))
    root = torch.stack([poses[:, 1:, -2], poses[:, 1:, -3] - poses[:, :-1, -3], poses[:, 1:, -1]], -1)
    velocity = (relative[:, 1:] - relative[:, :-1]) + root[:, :, None]  # [B, T - 1, J, 3]
    return speed_of_velocities(velocity, smooth)


def beat_loss(poses: torch.Tensor, beats: torch.Tensor, radius: int = BEAT_RADIUS, smooth: int = 5) -> torch.Tensor:
    """Kinematic beat loss (see the module docstring) of denormalised pose vectors ``[B, T, 72]`` against the
    beat labels ``beats [B, T]`` (a label at frame ``j`` is the minimum of the speed step ``j - 1 -> j``, as
    :func:`motion_beats` sets them): unitless, 0 when the body's mean joint speed is lowest on every labelled
    beat within +-``radius`` frames."""
    speed = pose_speed(poses, smooth)  # [B, T - 1]
    if speed.shape[1] < 2 * radius + 1:
        return speed.new_zeros(())
    window = speed.unfold(1, 2 * radius + 1, 1)  # [B, T - 1 - 2 radius, 2 radius + 1], centre k + radius
    centre = window[..., radius]
    neighbours = torch.cat([window[..., :radius], window[..., radius + 1:]], -1)
    scale = speed.detach().mean(1, keepdim=True) + BEAT_SPEED_FLOOR
    excess = (centre - neighbours.min(-1).values).clamp_min(0) / scale
    marked = beats[:, radius + 1:beats.shape[1] - radius].to(excess.dtype)  # label j = step j - 1
    return (excess * marked).sum() / marked.sum().clamp_min(1)


def teacher_schedule(frames: int, teacher_frames: int, free_frames: int, phase: int = 0) -> torch.Tensor:
    """Auto-conditioning mask ``[frames]``: True (fed the true previous pose) for ``teacher_frames``, then False
    (fed its own) for ``free_frames``, repeated, starting ``phase`` frames into the cycle."""
    cycle = teacher_frames + free_frames
    if cycle == 0 or free_frames == 0:
        return torch.ones(frames, dtype=torch.bool)
    return (torch.arange(frames) + phase) % cycle < teacher_frames


def dance_split(root, split: str, valid_dances=VALID_DANCES, test_dances=TEST_DANCES) -> list[Path]:
    """The dance folders of ``split`` ("train", "valid", "test", "all") under ``root``."""
    folders = find_dances(resolve_folder(root))
    held = {"valid": set(valid_dances), "test": set(test_dances)}
    if split == "all":
        chosen = folders
    elif split in held:
        chosen = [f for f in folders if f.name in held[split]]
    elif split == "train":
        chosen = [f for f in folders if f.name not in held["valid"] | held["test"]]
    else:
        raise ValueError(f"split must be train, valid, test or all, not {split!r}")
    if not chosen:
        raise FileNotFoundError(f"{root}: no dances in the {split} split")
    return chosen


class DanceWindows(torch.utils.data.Dataset):
    """Windows of dances with their music (see the module docstring).

    ``epoch_size``: training items per epoch (random windows; None: the held-out way, consecutive windows).
    ``n_fft``, ``hop_length``, ``context``, ``sample_rate``: the model's spectrum settings.
    """

    def __init__(self, root, split: str = "train", valid_dances=VALID_DANCES, test_dances=TEST_DANCES,
                 sample_rate: int = 16000, n_fft: int = 256, hop_length: int = 160, context: int = 8,
                 window_frames: int = 128, epoch_size: int | None = None, mirror_prob: float = 0.0,
                 noise_prob: float = 0.0, snr_db=(20.0, 10.0, 0.0), tempo_prob: float = 0.0, tempo=(0.9, 1.1),
                 seed: int = 0):
        self.folders = dance_split(root, split, valid_dances, test_dances)
        self.sample_rate, self.n_fft, self.hop_length, self.context = sample_rate, n_fft, hop_length, context
        self.window_frames, self.epoch_size = window_frames, epoch_size
        self.mirror_prob, self.noise_prob, self.snr_db = mirror_prob, noise_prob, tuple(snr_db)
        self.tempo_prob, self.tempo = tempo_prob, tuple(tempo)
        self.seed, self.epoch = seed, 0
        self.fps = 25.0
        self.per_frame = round(sample_rate / self.fps)
        self.lead = n_fft + (context - 1) * hop_length
        self.dances = []
        for folder in self.folders:
            clip = read_dance(folder)
            # as every model input is (audiokit dance, evaluate --dance): DC removed, soxr resampled
            audio = remove_dc(torch.from_numpy(clip.audio), clip.sample_rate)
            audio = resample(audio, clip.sample_rate, sample_rate)
            frames = min(clip.frames, len(audio) // self.per_frame)
            if frames < window_frames:
                raise ValueError(f"{folder}: {frames} frames, fewer than window_frames {window_frames}")
            style = STYLES.index(clip.style) if clip.style in STYLES else len(STYLES)
            dance = {"name": clip.name, "positions": clip.positions[:frames], "audio": audio, "style": style}
            if epoch_size is None:  # held out: the song as read too, for its music beats (free_running)
                dance["music"] = (clip.audio, clip.sample_rate)
            self.dances.append(dance)
        if epoch_size is None:
            self.windows = [(d, s) for d, dance in enumerate(self.dances)
                            for s in range(0, len(dance["positions"]) - window_frames + 1, window_frames)]
        lengths = np.array([len(d["positions"]) - window_frames + 1 for d in self.dances], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.epoch_size if self.epoch_size is not None else len(self.windows)

    def __getitem__(self, index: int) -> dict:
        tempo = 1.0
        if self.epoch_size is None:
            which, start = self.windows[index]
            rng = None
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            which = int(rng.choice(len(self.dances), p=self.weights))
            if rng.random() < self.tempo_prob:
                tempo = round(float(rng.uniform(*self.tempo)) * TEMPO_STEPS) / TEMPO_STEPS
            span = int(math.ceil((self.window_frames - 1) * tempo)) + 1  # source frames read
            if span > len(self.dances[which]["positions"]):
                tempo, span = 1.0, self.window_frames
            start = int(rng.integers(0, len(self.dances[which]["positions"]) - span + 1))
        dance = self.dances[which]
        if tempo == 1.0:
            positions = dance["positions"][start:start + self.window_frames]
            end = (start + self.window_frames) * self.per_frame
            first = start * self.per_frame - self.lead
            audio = dance["audio"][max(0, first):end]
            lead = self.lead + min(0, first)
        else:
            positions, audio = self._retimed(dance, start, tempo)
            lead = self.lead
        if rng is not None and rng.random() < self.mirror_prob:
            positions = mirror(positions)
        if rng is not None and rng.random() < self.noise_prob:
            noise = torch.from_numpy(rng.standard_normal(len(audio)).astype(np.float32))
            audio = audio + scale_to_snr(audio, noise, float(rng.choice(self.snr_db)))
        return {"spec": self.features(audio, lead), "poses": torch.from_numpy(poses_from_positions(positions)),
                "beats": torch.from_numpy(motion_beats(positions)), "style": dance["style"]}

    def _retimed(self, dance: dict, start: int, tempo: float):
        """The window from source frame ``start`` played ``tempo`` times as fast: motion linearly interpolated
        at source times ``start + k * tempo``, music (with its spectrum context) resampled by the same factor
        (tempo and pitch change together)."""
        times = start + np.arange(self.window_frames) * tempo
        positions = frames_at(dance["positions"], times).astype(np.float32)
        source_lead = int(round(self.lead * tempo))
        first = start * self.per_frame - source_lead
        end = int(round((start + self.window_frames * tempo) * self.per_frame))
        audio = dance["audio"][max(0, first):end]
        audio = torch.nn.functional.pad(audio, (max(0, -first), 0))
        audio = AF.resample(audio, int(round(tempo * TEMPO_STEPS)), TEMPO_STEPS)
        want = self.lead + self.window_frames * self.per_frame
        audio = torch.nn.functional.pad(audio[:want], (0, max(0, want - len(audio))))
        return positions, audio

    def features(self, audio: torch.Tensor, lead: int = 0) -> torch.Tensor:
        from audiokit.audio.features import frame_log_power
        return frame_log_power(audio, self.sample_rate, self.fps, self.n_fft, self.hop_length, self.context, lead)

    def stats(self):
        """Normalisation statistics of these dances (mirrored ones included when mirroring):
        ``(pose_mean, pose_std, spec_mean, spec_std)`` as float32 arrays."""
        poses, specs = [], []
        for dance in self.dances:
            poses.append(poses_from_positions(dance["positions"]))
            if self.mirror_prob > 0:
                poses.append(poses_from_positions(mirror(dance["positions"])))
            specs.append(self.features(dance["audio"]).double())
        poses = np.concatenate(poses)
        specs = torch.cat(specs)
        return (poses.mean(0), poses.std(0), specs.mean(0).float().numpy(), specs.std(0).float().numpy())


class DanceBrain(RecipeBrain):
    """Trains :class:`~audiokit.models.dance.DanceGenerator`. Hyperparameters beyond RecipeBrain's:
    ``teacher_frames``, ``free_frames`` (auto-conditioning, :func:`teacher_schedule`), ``contrastive_weight``,
    ``margin``, ``style_dropout`` (chance a training window is given the "any style" index instead of its
    own), ``style_weight`` (the style head's cross-entropy, so that ``style="auto"`` can pick the style from
    the music), ``beat_weight`` (the kinematic :func:`beat_loss`, on the decoder's auto-conditioned output; 0,
    the default, does not compute it; above 0 validation also records ``beat_loss``). The normalisation
    statistics of the model are set from ``train_set`` at the start of a new run (a resumed one takes them from
    its checkpoint). Validation (same schedule, phase 0) records ``loss``,
    ``pose_loss`` (lower is better; the learning rate is annealed on it), ``contrastive`` and ``style_loss``.

    **Free-running validation** (:meth:`free_running`; on with ``free_valid`` True, the default, and a recipe's
    ``free_scorer``): after each validation pass the model dances, free-running, to the whole songs of
    ``valid_set`` with style ``valid_style`` (None or ``"any"``, the default: "any style"; ``"auto"``; ``"known"``: each
    dance's own; or a style name), and ``free_scorer(generated, real, reference, fps)`` scores that against the
    real dancers of those songs and, as the reference of real dancing, the ``train_set`` dances, and is given the
    songs as read (``music=[(wav, sample_rate)]``: the beat alignment of the generated dance, ``free_bas`` and
    ``free_beat_f``, against librosa's beats of the music as ``evaluate --dance`` finds them). The recipe names
    :func:`audiokit.metrics.dance_eval.free_running_score` (tasks do not import metrics, their peer layer). Its
    figures are recorded as ``free_<name>``: ``free_score`` (lower is better) is the recipe's ``select_by``. The
    teacher-forced pose loss misjudges free-running dances (``pretrained/dance_lstm.md``); it stays the default
    ``select_by`` only because a Brain without the recipe's scorer cannot compute ``free_score``."""

    default_select_by = "pose_loss"
    higher_is_better = False

    def on_fit_start(self):
        self.check_free_valid()
        if not bool(self.model.pose_std.ne(1).any()):  # not set yet: a checkpoint, if any, replaces them below
            self.model.set_stats(*self.hparams.train_set.stats())
        super().on_fit_start()

    def check_free_valid(self) -> None:
        """AudiokitError, before training, for a ``valid_style`` the model cannot dance, or a ``free_*``
        ``select_by`` without the free-running validation."""
        style = getattr(self.hparams, "valid_style", None)
        if style not in (None, "any", "auto", "known", *STYLES):
            raise AudiokitError(f"valid_style {style}: must be null or any, auto, known or one of {', '.join(STYLES)}")
        select_by = getattr(self.hparams, "select_by", self.default_select_by)
        if select_by.startswith("free_") and self.free_scorer() is None:
            raise AudiokitError(f"select_by {select_by} needs the free-running validation (free_valid True and a "
                                "free_scorer); give --select_by pose_loss without it")

    def free_scorer(self):
        """The recipe's ``free_scorer`` when ``free_valid`` is on, else None."""
        return getattr(self.hparams, "free_scorer", None) if getattr(self.hparams, "free_valid", True) else None

    def free_running(self) -> dict:
        """``{"free_<figure>": value}`` of the free-running validation (see the class docstring; empty when
        off): the model, in eval mode and without gradients, dances to each ``valid_set`` song from the mean
        pose (:meth:`~audiokit.models.dance.DanceGenerator.dance`: positions ``[T, 23, 3]``, cm, 25 fps)."""
        scorer = self.free_scorer()
        if scorer is None:
            return {}
        style = getattr(self.hparams, "valid_style", None)
        style = None if style == "any" else style
        valid, model = self.hparams.valid_set, self.model
        was_training = model.training
        model.eval()
        generated = [model.dance(d["audio"], style=d["style"] if style == "known" else style) for d in valid.dances]
        model.train(was_training)
        real = [d["positions"] for d in valid.dances]
        reference = [d["positions"] for d in self.hparams.train_set.dances]
        songs = {"music": [d["music"] for d in valid.dances]} if all("music" in d for d in valid.dances) else {}
        figures = scorer(generated, real, reference, valid.fps, **songs)
        return {f"free_{name}": float(value) for name, value in figures.items()}

    def compute_forward(self, batch, stage):
        spec, poses = batch["spec"].to(self.device), self.model.normalise(batch["poses"].to(self.device))
        style = batch["style"].to(self.device)
        train = stage == sb.Stage.TRAIN
        if train and getattr(self.hparams, "style_dropout", 0.0) > 0:
            drop = torch.rand(style.shape, device=self.device) < self.hparams.style_dropout
            style = torch.where(drop, torch.full_like(style, self.model.num_styles), style)
        teacher, free = getattr(self.hparams, "teacher_frames", 5), getattr(self.hparams, "free_frames", 5)
        phase = int(torch.randint(teacher + free, ())) if train and teacher + free else 0
        mask = teacher_schedule(poses.shape[1] - 1, teacher, free, phase)
        pred, emb = self.modules.model(spec, poses, mask, style=style if self.model.num_styles else None)
        return pred, emb, poses

    def style_loss(self, emb, batch):
        """Cross-entropy of the style head's per-frame logits against the dance's style (0 without styles;
        dances of no known style are left out)."""
        if not self.model.num_styles:
            return emb.new_zeros(())
        logits = self.model.style_logits(emb.float())
        target = batch["style"].to(self.device)[:, None].expand(-1, logits.shape[1])
        if not bool((target < self.model.num_styles).any()):
            return emb.new_zeros(())
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(),
                                                 ignore_index=self.model.num_styles)

    def compute_objectives(self, predictions, batch, stage):
        pred, emb, poses = predictions
        pose_loss = torch.nn.functional.mse_loss(pred.float(), poses[:, 1:])
        contrast = contrastive_loss(emb.float(), batch["beats"].to(self.device), getattr(self.hparams, "margin", 1.0))
        style = self.style_loss(emb, batch)
        loss = (pose_loss + getattr(self.hparams, "contrastive_weight", 0.1) * contrast
                + getattr(self.hparams, "style_weight", 0.1) * style)
        beat_weight = getattr(self.hparams, "beat_weight", 0.0)
        if beat_weight:
            moved = self.model.denormalise(torch.cat([poses[:, :1], pred.float()], 1))
            beat = beat_loss(moved, batch["beats"].to(self.device))
            loss = loss + beat_weight * beat
            if stage != sb.Stage.TRAIN:
                self.sums["beat_loss"] = self.sums.get("beat_loss", 0.0) + float(beat) * pred.shape[0]
        if stage != sb.Stage.TRAIN:
            n = pred.shape[0]
            self.sums["pose_loss"] += float(pose_loss) * n
            self.sums["contrastive"] += float(contrast) * n
            self.sums["style_loss"] += float(style) * n
            self.count += n
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.sums, self.count = {"pose_loss": 0.0, "contrastive": 0.0, "style_loss": 0.0}, 0
        super().on_stage_start(stage, epoch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {"loss": stage_loss, **{k: v / max(self.count, 1) for k, v in self.sums.items()}}
        if stage == sb.Stage.TEST:
            self.test_stats = stats
            return
        self.finish_validation(epoch, {**stats, **self.free_running()})

    def annealing_value(self, stats: dict) -> float:
        return stats["pose_loss"]


def dance_collate(items: list[dict]) -> dict:
    """Stack equal-length items: ``spec [B, T, F]``, ``poses [B, T, 72]``, ``beats [B, T]``, ``style [B]``."""
    return {"spec": torch.stack([i["spec"] for i in items]), "poses": torch.stack([i["poses"] for i in items]),
            "beats": torch.stack([i["beats"] for i in items]),
            "style": torch.tensor([i["style"] for i in items], dtype=torch.long)}

