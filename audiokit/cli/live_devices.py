"""Sound devices for ``audiokit stream``: PortAudio through sounddevice, with every device, rate and
open error turned into one line naming the option."""
from __future__ import annotations

from typing import Optional

from audiokit.audio.resample import rate_problem
from audiokit.errors import AudiokitError


def sounddevice_module():
    """The sounddevice module; AudiokitError saying what to install when it or PortAudio is missing, or that the
    sound system cannot start (PortAudio fails to initialise, e.g. on a broken ``~/.asoundrc``)."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AudiokitError(f"live audio needs PortAudio and sounddevice (apt-get install libportaudio2; "
                            f"pip install 'audiokit[mic]'): {exc}") from None
    except Exception as exc:  # sounddevice.PortAudioError, raised while the module initialises PortAudio
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        raise AudiokitError(f"the sound system cannot start (check its configuration, e.g. ~/.asoundrc): "
                            f"{' '.join(detail.split())}") from None
    return sounddevice


def check_devices(sd) -> None:
    """AudiokitError when PortAudio finds no audio device at all (no sound card, or a configuration that
    defines none)."""
    if len(sd.query_devices()) == 0:
        raise AudiokitError("no audio devices found (no sound card, or the sound system's configuration, e.g. "
                            "~/.asoundrc, defines none)")


def device_index(sd, value: Optional[str], kind: str) -> Optional[int]:
    """The index of the ``kind`` ("input"/"output") device named by ``--<kind>-device`` (None: the default);
    AudiokitError naming the option when there is none such, or when there is no default ``kind`` device."""
    if value is None:
        try:
            sd.query_devices(kind=kind)
        except (ValueError, sd.PortAudioError):
            raise AudiokitError(f"no default {kind} device (choose one with --{kind}-device; see "
                                "--list-devices)") from None
        return None
    try:
        return int(sd.query_devices(int(value) if value.isdigit() else value, kind)["index"])
    except (ValueError, sd.PortAudioError) as exc:
        problem = (str(exc).strip().splitlines() or ["no such device"])[0]
        raise AudiokitError(f"--{kind}-device {value}: {problem} (see --list-devices)") from None


def device_rate(sd, args, devices, model_rate: int, no_play: bool) -> int:
    """``--device-rate`` if both devices take it (AudiokitError otherwise), else the model's rate if they take
    it, else the input device's default rate; AudiokitError for a rate below ``MIN_SAMPLE_RATE``."""
    rate = _chosen_rate(sd, args, devices, model_rate, no_play)
    if (problem := rate_problem(rate)) is not None:
        raise AudiokitError(f"device rate {problem}")
    return rate


def _chosen_rate(sd, args, devices, model_rate: int, no_play: bool) -> int:
    def supported(rate: int) -> None:
        sd.check_input_settings(devices[0], channels=1, dtype="int16", samplerate=rate)
        if not no_play:
            sd.check_output_settings(devices[1], channels=1, dtype="int16", samplerate=rate)

    if args.device_rate and rate_problem(args.device_rate) is not None:
        return args.device_rate  # refused by device_rate before any device is asked
    if args.device_rate:
        try:
            supported(args.device_rate)
        except (ValueError, sd.PortAudioError) as exc:
            raise AudiokitError(f"--device-rate {args.device_rate}: {' '.join(str(exc).split())}") from None
        return args.device_rate
    try:
        supported(model_rate)
        return model_rate
    except (ValueError, sd.PortAudioError):
        return int(sd.query_devices(devices[0], "input")["default_samplerate"])


def open_stream(sd, kind, rate, block, devices, no_play, callback, finished, failed):
    """A started-on-enter sounddevice stream calling ``callback(indata, outdata|None, frames, time, status)``.

    An exception escaping ``callback`` would otherwise be printed by cffi as a traceback and the stream aborted
    as if it had ended well (``finished`` runs either way): it is handed to ``failed(exc)`` instead, and the stream
    aborted (``sd.CallbackStop`` and ``sd.CallbackAbort`` keep their meaning)."""
    def guarded(indata, outdata, frames, time_info, status):
        try:
            callback(indata, outdata, frames, time_info, status)
        except (sd.CallbackStop, sd.CallbackAbort):
            raise
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread, which then ends the stream
            failed(exc)
            raise sd.CallbackAbort from None

    if no_play:
        def wrapped(indata, frames, time_info, status):
            guarded(indata, None, frames, time_info, status)
    else:
        wrapped = guarded
    return kind(samplerate=rate, blocksize=block, device=devices, channels=1, dtype="int16", latency="low",
                callback=wrapped, finished_callback=finished)
