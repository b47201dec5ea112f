"""The Python API: enhance and separate arrays and files with a pretrained (or any) model.

    import audiokit
    clean = audiokit.enhance(noisy, 48000)                # ndarray/tensor [T] or [C, T], same back
    audiokit.enhance_file("talk.wav")                     # -> talk_enhanced.wav
    talkers = audiokit.separate(mixture, 16000)           # [S, T] (or [S, C, T]), at 16 kHz
    audiokit.separate_file("meeting.wav", shifts=4)       # -> meeting_s1.wav, meeting_s2.wav
    audiokit.classify("yes.wav", top_k=3)                 # Classification(label, prob, top, end)
    audiokit.spot("long.wav", threshold=0.8)              # [Detection(label, prob, start, end), ...]
    positions = audiokit.dance("song.wav", style="waltz")  # [frames, 23, 3] cm at 25 fps
    audiokit.dance_file("song.wav")                       # -> song.bvh, song.mp4 (stick figure + the music)
    model = audiokit.load_model("frcrn_causal_small")

Every path runs the model through the streaming runtime (``audiokit.streaming.runtime``), one stream per
channel, in large chunks (exact for causal models, their state carried from chunk to chunk; windowed
overlap-add otherwise) or, with ``stream=True``, in chunks of ``chunk_ms`` milliseconds as live audio would
arrive (causal models then run frame by frame on a frame engine, ``audiokit.streaming.engines``). Resampling to the
model rate and back is done in chunks too, so memory stays bounded whatever the length. Separation runs
the model in overlapping windows whose speakers are aligned (``audiokit.streaming.separation``).
Classification and keyword spotting run a streaming classifier's posterior frame by frame
(``audiokit.streaming.classification``), in blocks too. Dancing runs a dance model on the whole song
(``audiokit.dancing``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from audiokit.audio.resample import rate_problem
from audiokit.blocks import BLOCK_SECONDS, check_targets, file_identity, open_blocks, output_paths, process_file
from audiokit.dancing import DEFAULT_FORMATS, DEFAULT_SIZE, Dancer, dance_targets
from audiokit.errors import AudioError, ModelError
from audiokit.hub.pretrained import check_device, load_model
from audiokit.hub.registry import default_model
from audiokit.streaming.classification import Classification, Classifier, Detection, Spotter
from audiokit.streaming.outputs import OutputSpec
from audiokit.streaming.pipeline import BlockPipeline, ChannelStreams, kept_input_share
from audiokit.streaming.separation import WindowedSeparator, refuse_separator

__all__ = ["Classifier", "Dancer", "Enhancer", "classify", "dance", "dance_file", "enhance", "enhance_file",
           "iter_spots", "load_classifier", "load_dancer", "load_model", "separate", "separate_file", "spot"]

STREAM_CHUNK_MS = 20.0
#: the chunks a causal model runs on without ``stream`` (half a block: the fastest size measured)
CHUNK_SECONDS = BLOCK_SECONDS / 2

ModelSpec = Union[None, str, Path, nn.Module]


class Enhancer:
    """A model ready to enhance: ``open(channels)`` gives a block processor (``audiokit.streaming.pipeline``).

    ``model``: None (the default enhancer), a pretrained name or file, or a module with ``sample_rate``
    and ``enhance`` (or the streaming interface); ModelKindError for a separation model. ``stream``:
    chunks of ``chunk_ms`` ms (default 20) on the model's frame engine, as live audio, instead of
    ``CHUNK_SECONDS`` chunks (windows of ``BLOCK_SECONDS``); non-causal models then use the runtime's default
    window. ``atten_lim_db``: attenuate the noise by at most this many dB by keeping ``10 ** (-dB / 20)`` of the
    input, at its own rate and full band, sample for sample (None: no limit; 0 dB gives the input back).
    """

    output = OutputSpec.audio(1)  # one enhanced signal per input

    def __init__(self, model: ModelSpec = None, stream: bool = False, chunk_ms: Optional[float] = None,
                 device: str = "cpu", atten_lim_db: Optional[float] = None):
        check_device(device)
        self.input_share = kept_input_share(atten_lim_db, "atten_lim_db=")  # refused before the model loads
        self.model = _module(model, "enhance", device)
        refuse_separator(self.model)
        self.sample_rate = int(getattr(self.model, "sample_rate", 16000))
        if stream and chunk_ms is not None and not 0 < chunk_ms < float("inf"):
            raise ModelError(f"--chunk-ms must be a positive number, got {chunk_ms}")
        seconds = (chunk_ms or STREAM_CHUNK_MS) / 1000 if stream else CHUNK_SECONDS
        self.chunk = max(1, round(seconds * self.sample_rate))
        self.window = None if stream else max(1, round(BLOCK_SECONDS * self.sample_rate))
        self.stream = stream

    def open(self, channels: int) -> ChannelStreams:
        return ChannelStreams(self.model, channels, self.chunk, window=self.window, frames=self.stream,
                              input_share=self.input_share)


def enhance(wav: Union[np.ndarray, torch.Tensor], sample_rate: int, model: ModelSpec | Enhancer = None,
            stream: bool = False, chunk_ms: Optional[float] = None,
            atten_lim_db: Optional[float] = None) -> Union[np.ndarray, torch.Tensor]:
    """Enhance ``wav`` ([T] or [C, T], float, at ``sample_rate`` Hz): same type, shape and rate back.
    ``atten_lim_db``: the noise is attenuated by at most this many dB (see :class:`Enhancer`).

    Each channel is enhanced on its own. Raises AudioError for empty input, NaN/Inf samples, or more channels than
    samples (channels last, ``[T, C]``: pass ``wav.T``).
    """
    enhancer = _enhancer(model, stream, chunk_ms, atten_lim_db)
    return _process_array(enhancer, wav, sample_rate, outputs=False)


def _enhancer(model: ModelSpec | Enhancer, stream: bool, chunk_ms: Optional[float],
              atten_lim_db: Optional[float]) -> Enhancer:
    """``model`` as an :class:`Enhancer` with these options; ModelError if an Enhancer comes with options of its
    own to ignore."""
    if not isinstance(model, Enhancer):
        return Enhancer(model, stream, chunk_ms, atten_lim_db=atten_lim_db)
    if stream or chunk_ms is not None or atten_lim_db is not None:
        raise ModelError("stream, chunk_ms and atten_lim_db are the Enhancer's: pass them to Enhancer(...)")
    return model


def _checked_rate(sample_rate) -> int:
    """``sample_rate`` as an int; AudioError unless it is a whole number of Hz, at least ``MIN_SAMPLE_RATE``."""
    if (problem := rate_problem(sample_rate)) is not None:
        raise AudioError("input", f"sample_rate {problem}")
    return int(sample_rate)


def _checked_array(wav) -> tuple[Union[np.ndarray, torch.Tensor], torch.Tensor]:
    """``(wav, x)``: ``wav`` as an ndarray or tensor, and as a float tensor ``x`` [T] or [C, T]; AudioError for
    samples that are not floats, another shape, no samples, or NaN/Inf."""
    if not isinstance(wav, (np.ndarray, torch.Tensor)):
        wav = np.asarray(wav)
    if not (wav.dtype.is_floating_point if isinstance(wav, torch.Tensor) else wav.dtype.kind == "f"):
        raise AudioError("input", f"{wav.dtype} samples, want floats in [-1, 1] (int16 PCM: divide by 32768)")
    # (a copy when needed: a view with negative strides, e.g. wav[::-1], has no tensor of its own)
    x = torch.as_tensor(np.ascontiguousarray(wav, dtype=np.float32) if isinstance(wav, np.ndarray) else wav)
    if x.ndim not in (1, 2) or x.shape[-1] == 0 or x.numel() == 0:
        raise AudioError("input", f"shape {tuple(x.shape)}, want [T] or [C, T] with C, T > 0")
    if x.ndim == 2 and x.shape[0] > x.shape[1]:  # each channel is a stream of its own: T of them would run
        raise AudioError("input", f"shape {tuple(x.shape)} reads as {x.shape[0]} channels of {x.shape[1]} samples; "
                                  f"want [C, T], channels first (for [T, C] audio, as soundfile reads it, pass wav.T)")
    if not torch.isfinite(x).all():
        raise AudioError("input", "contains NaN or Inf samples")
    return wav, x


def _process_array(processor, wav, sample_rate: int, outputs: bool):
    """``wav`` [T] or [C, T] through ``processor`` (``open(channels)``, ``sample_rate``, ``output``), in blocks:
    audio of the same shape back, or with ``outputs`` every output stacked in front ([S, T] or [S, C, T]);
    frames ``[N, *shape]`` or ``[C, N, *shape]``."""
    sample_rate = _checked_rate(sample_rate)
    wav, x = _checked_array(wav)
    channels = x.detach().cpu().float().reshape(-1, x.shape[-1])
    count = channels.shape[0]
    pipeline = BlockPipeline(lambda: processor.open(count), sample_rate, processor.sample_rate, processor.output, count)
    block = max(1, int(BLOCK_SECONDS * sample_rate))
    outs = [pipeline.feed(piece) for piece in channels.split(block, dim=-1)] + [pipeline.flush()]
    out = torch.cat(outs, dim=2)  # [S, C, T] or [1, C, N, *shape]
    if not torch.isfinite(out).all():
        raise ModelError("the model produced NaN or Inf samples")
    if not processor.output.is_audio:
        out = out[0] if x.ndim == 2 else out[0, 0]
    else:
        out = out.reshape(out.shape[0], *x.shape) if outputs else out[0].reshape(x.shape)
    if isinstance(wav, np.ndarray):
        return out.numpy().astype(wav.dtype if wav.dtype.kind == "f" else np.float32, copy=False)
    return out.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)


def _separator(model: ModelSpec, shifts: int, device: str = "cpu") -> WindowedSeparator:
    """The separation model (None: the default) in 4 s windows overlapping by 1 s."""
    return WindowedSeparator(_module(model, "separate", device), device=device, shifts=shifts)


def separate(wav: Union[np.ndarray, torch.Tensor], sample_rate: int, model: ModelSpec = None,
             shifts: int = 1) -> Union[np.ndarray, torch.Tensor]:
    """Split ``wav`` ([T] or [C, T], float, at ``sample_rate`` Hz) into one signal per talker:
    ``[S, T]`` or ``[S, C, T]`` of the same type and rate, each channel separated on its own.

    Any length, in bounded memory: 4 s windows overlapping by 1 s, each speaker kept on its output.
    ``shifts``: average that many passes on shifted frame grids (slower, better). Raises AudioError
    for empty input, NaN/Inf samples, or more channels than samples (``[T, C]``: pass ``wav.T``).
    """
    return _process_array(_separator(model, shifts), wav, sample_rate, outputs=True)


def separate_file(path: Union[str, Path], out_dir: Union[str, Path, None] = None, model: ModelSpec = None,
                  force: bool = False, shifts: int = 1) -> list[Path]:
    """Separate an audio file into ``<stem>_s1.wav``, ``<stem>_s2.wav``, ... in ``out_dir`` (default: beside
    it; ``<stem>_separated.wav`` for a one-output model, as the CLI), 16-bit WAV at the file's rate and
    channels; returns their paths.

    Refuses to overwrite unless ``force`` (all outputs checked before any is written), and never writes over
    ``path`` itself; raises AudioError for a bad file (nothing is written then).
    """
    path = Path(path)
    folder = Path(out_dir) if out_dir is not None else path.parent
    separator = _separator(model, shifts)
    targets: list[Path] = []

    def name_outputs(count: int) -> list[Path]:
        targets.extend(output_paths(path, folder, "separated", count))
        check_targets(targets, force, "use force=True", inputs={file_identity(path)})
        return targets

    process_file(path, separator.open, separator.sample_rate, name_outputs, output=separator.output,
                 replace=force, force_hint="use force=True")
    return targets


def enhance_file(path: Union[str, Path], out_path: Union[str, Path, None] = None,
                 model: ModelSpec | Enhancer = None, force: bool = False, stream: bool = False,
                 chunk_ms: Optional[float] = None, atten_lim_db: Optional[float] = None) -> Path:
    """Enhance an audio file into ``out_path`` (default ``<stem>_enhanced.wav`` beside it), 16-bit WAV at
    the file's rate and channels, streamed in bounded memory; returns ``out_path``. ``atten_lim_db``: as
    :func:`enhance`.

    Refuses to overwrite unless ``force``, and never writes over ``path`` itself; raises AudioError for a bad
    file (nothing is written then).
    """
    path = Path(path)
    target = Path(out_path) if out_path is not None else path.with_name(f"{path.stem}_enhanced.wav")
    enhancer = _enhancer(model, stream, chunk_ms, atten_lim_db)

    def name_outputs(count: int) -> list[Path]:
        check_targets([target], force, "use force=True", inputs={file_identity(path)})
        return [target]

    process_file(path, enhancer.open, enhancer.sample_rate, name_outputs, output=enhancer.output,
                 replace=force, force_hint="use force=True")
    return target


AudioInput = Union[str, Path, np.ndarray, torch.Tensor]


def load_classifier(model: ModelSpec | Classifier = None, device: str = "cpu") -> Classifier:
    """A :class:`~audiokit.streaming.classification.Classifier` for ``model``: None (the default classifier;
    ModelError while none is shipped), a pretrained name or file, a classifier module, or a Classifier (returned
    as it is). ModelKindError for a model that is not a streaming classifier."""
    if isinstance(model, Classifier):
        return model
    check_device(device)
    return Classifier(_module(model, "classify", device))


def _module(model: ModelSpec, task: str, device: str = "cpu") -> nn.Module:
    """``model`` itself when it is a module, else the pretrained model it names (None: ``task``'s default)."""
    return model if isinstance(model, nn.Module) else load_model(str(model or default_model(task)), device=device)


def _audio_blocks(audio: AudioInput, sample_rate: Optional[int]) -> tuple[int, Iterable[torch.Tensor]]:
    """``(rate, [C, n] blocks)`` of an audio file (read block by block; ``sample_rate`` must be None: the file
    has its own) or of an array ``[T]`` / ``[C, T]`` at ``sample_rate`` Hz. AudioError for bad input."""
    if isinstance(audio, (str, Path)):
        if sample_rate is not None:
            raise AudioError(audio, f"sample_rate={sample_rate}: only for arrays (a file has its own rate)")
        rate, _, blocks = open_blocks(Path(audio))
        return rate, blocks
    if sample_rate is None:
        raise AudioError("input", "an array needs its sample_rate")
    rate = _checked_rate(sample_rate)
    _, x = _checked_array(audio)
    x = x.detach().cpu().float().reshape(-1, x.shape[-1])
    return rate, x.split(max(1, int(BLOCK_SECONDS * rate)), dim=-1)


def classify(audio_or_path: AudioInput, sample_rate: Optional[int] = None, model: ModelSpec | Classifier = None,
             top_k: int = 1) -> Classification:
    """The class of a clip: an audio file, or an array ``[T]`` / ``[C, T]`` (float) at ``sample_rate`` Hz
    (channels mixed down to one; any rate, resampled to the model's).

    Returns a :class:`~audiokit.streaming.classification.Classification`: ``label``, ``prob``, ``top`` (the
    ``top_k`` best ``(label, prob)`` pairs) and ``end_s``. A clip no longer than the model's pooling window
    (1 s for Speech Commands) is padded to it and classified at its end; a longer one by its most confident full
    window (words before ``_silence_``/``_unknown_``), in bounded memory. ``model``: see :func:`load_classifier`
    (pass a Classifier to load it once for many calls).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ModelError(f"top_k must be a whole number of at least 1, got {top_k!r}")
    classifier = load_classifier(model)
    rate, blocks = _audio_blocks(audio_or_path, sample_rate)
    return classifier.classify(blocks, rate, min(top_k, len(classifier.labels)))


def iter_spots(path_or_array: AudioInput, sample_rate: Optional[int] = None, model: ModelSpec | Classifier = None,
               threshold: float = 0.8) -> Iterator[Detection]:
    """Keyword spotting through a recording of any length (an audio file, or an array at ``sample_rate`` Hz):
    each :class:`~audiokit.streaming.classification.Detection` (``label``, ``prob``, ``start_s``, ``end_s``) as
    soon as it ends, the audio streamed block by block through the model's step mode.

    A detection starts where a word's running posterior (not ``_silence_``/``_unknown_``) reaches ``threshold``
    and ends where it falls below half of it or another word wins. The model, the threshold and the input are
    checked at the call (errors raised then), the audio is read as the detections are asked for.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ModelError(f"threshold must be a probability in (0, 1], got {threshold!r}")
    classifier = load_classifier(model)
    rate, blocks = _audio_blocks(path_or_array, sample_rate)
    return Spotter.spot(classifier, blocks, rate, threshold)


def spot(path_or_array: AudioInput, sample_rate: Optional[int] = None, model: ModelSpec | Classifier = None,
         threshold: float = 0.8) -> list[Detection]:
    """All the detections of :func:`iter_spots`, in order."""
    return list(iter_spots(path_or_array, sample_rate, model, threshold))


def load_dancer(model: ModelSpec | Dancer = None, device: str = "cpu") -> Dancer:
    """A :class:`~audiokit.dancing.Dancer` for ``model``: None (the default dance model; ModelError while none is
    shipped), a pretrained name or file, a dance module (``DanceGenerator``), or a Dancer (returned as it is).
    ModelKindError for a model that does not dance."""
    if isinstance(model, Dancer):
        return model
    check_device(device)
    return Dancer(_module(model, "dance", device))


def dance(music: AudioInput, sample_rate: Optional[int] = None, model: ModelSpec | Dancer = None,
          style: Optional[str] = "auto", seed: Optional[int] = None, beat_sync: bool = True) -> np.ndarray:
    """A dance to ``music``: an audio file, or an array ``[T]`` / ``[C, T]`` (float) at ``sample_rate`` Hz (any rate
    and channels: mixed down to one, resampled to the model's rate). Returns joint positions ``[frames, 23, 3]``
    (float32, centimetres, y up, ``audiokit.motion.skeleton``) at the model's frame rate (25 fps): one pose per
    whole 40 ms of music, at least 2. ``style``: ``"auto"`` (picked from the music), ``"cha-cha"``, ``"rumba"``,
    ``"tango"``, ``"waltz"``, or None (the model's "any style"). ``seed``: see ``audiokit.dancing`` (the shipped
    family is deterministic). ``beat_sync``: retime the finished dance so that its motion beats near a music beat
    land on it (``audiokit.dancing``; False: the model's own timing, as ``stream dance`` sends it). ``model``: see
    :func:`load_dancer`. AudioError for bad or too short music.
    """
    dancer = load_dancer(model)
    rate, blocks = _audio_blocks(music, sample_rate)
    wav = torch.cat(list(blocks), dim=-1)  # [C, T]
    return dancer.dance(wav, rate, style, seed, music if isinstance(music, (str, Path)) else "input", beat_sync)


def dance_file(path: Union[str, Path], out_dir: Union[str, Path, None] = None, formats: Iterable[str] = DEFAULT_FORMATS,
               model: ModelSpec | Dancer = None, style: Optional[str] = "auto", force: bool = False,
               seed: Optional[int] = None, size: int = DEFAULT_SIZE, beat_sync: bool = True) -> list[Path]:
    """Dance to a music file and write ``<stem>.bvh`` and ``<stem>.mp4`` (``formats``: any of ``"bvh"``, ``"gif"``,
    ``"mp4"``) in ``out_dir`` (default: beside it): a BVH of the skeleton with per-joint rotations
    (``audiokit.motion.bvh``), and a ``size`` x ``size`` stick-figure video, the MP4 with the music as its
    soundtrack (``audiokit.motion.render``); ``beat_sync`` as in :func:`dance`. Returns their paths.

    Refuses to overwrite unless ``force`` (all outputs checked before the model runs), and never writes over
    ``path`` itself; the outputs are placed all or none. AudioError for a bad file (nothing is written then).
    """
    path = Path(path)
    dancer = load_dancer(model)
    targets = dance_targets(path, out_dir, formats)
    check_targets(targets, force, "use force=True", inputs={file_identity(path)})
    return dancer.dance_file(path, targets, style, seed, size, force, "use force=True", beat_sync)
