"""``audiokit evaluate --dance``: the options, the generated motion (a model or BVH files) and the table.

Scoring is :func:`audiokit.metrics.dance_eval.evaluate_dances`; this module only parses, loads and prints.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

DEFAULT_DATA = Path("../shared/data/dance_with_melody")
OPTIONS = ("data", "dances", "model", "style", "motion", "window")
COLUMNS = (("beat_f", "beat F", 3), ("bas", "BAS", 3), ("beats_per_s", "beats/s", 2),
           ("speed_per_body", "speed/bd", 3), ("fid_k", "FID_k", 1), ("fid_g", "FID_g", 1), ("div_k", "div_k", 2),
           ("div_g", "div_g", 2), ("foot_sliding", "slide", 1), ("root_drift", "drift", 1), ("freeze", "freeze", 2))
"""(figure, column title, decimals) of the table."""


def add_options(parser: argparse.ArgumentParser) -> None:
    """The ``--dance`` options of ``audiokit evaluate``."""
    from audiokit.motion.dance_data import TEST_DANCES

    group = parser.add_argument_group("dance (--dance)")
    group.add_argument("--dance", action="store_true",
                       help="score dances: generated motion beside the real dancers and controls on the same music")
    group.add_argument("--data", type=Path, metavar="DIR",
                       help=f"the dance folders (default: {DEFAULT_DATA}); the ones not scored are the reference")
    group.add_argument("--dances", nargs="+", metavar="NAME",
                       help=f"dance folders to score (default: the test dances {' '.join(TEST_DANCES)})")
    group.add_argument("--model", metavar="NAME|PATH", help="dance model (.safetensors) that dances to each song")
    group.add_argument("--style", metavar="auto|any|known|STYLE",
                       help="--model's style: picked from the music (auto, the default), none (any), the dance's "
                            "own (known), or cha-cha, rumba, tango, waltz")
    group.add_argument("--no-beat-sync", dest="beat_sync", action="store_const", const=False,
                       help="--model's dance in its own timing, as stream dance sends it (default: retimed onto the "
                            "music's beats, as audiokit dance writes it)")
    group.add_argument("--motion", type=Path, metavar="DIR",
                       help="generated motion as <dance>.bvh files (audiokit's rig, 25 fps) instead of --model")
    group.add_argument("--window", type=float, metavar="S",
                       help="seconds per window of the feature distances (default: 10)")


def check_options(args: argparse.Namespace) -> None:
    """AudiokitError for a ``--dance`` option without ``--dance``, or the speech options with it."""
    from audiokit.errors import AudiokitError

    given = [f"--{name}" for name in OPTIONS if getattr(args, name) is not None]
    given += ["--no-beat-sync"] if args.beat_sync is not None else []
    if not args.dance:
        if given:
            raise AudiokitError(f"{given[0]}: only used with --dance")
        return
    speech = [f"--{name}" for name in ("clean", "estimate", "dnsmos", "mixture") if getattr(args, name) is not None]
    if speech or args.separated:
        raise AudiokitError(f"{(speech or ['--separated'])[0]}: not used with --dance")
    if args.model is not None and args.motion is not None:
        raise AudiokitError("--model and --motion: give one of them (the generated motion)")
    if args.style is not None and args.model is None:
        raise AudiokitError(f"--style {args.style}: only used with --model")
    if args.beat_sync is not None and args.model is None:
        raise AudiokitError("--no-beat-sync: only used with --model")
    if args.window is not None and not (math.isfinite(args.window) and args.window > 0):
        raise AudiokitError(f"--window {args.window:g}: must be a positive number of seconds")


def generator(args: argparse.Namespace):
    """``generate(clip) -> positions [T, 23, 3]`` from ``--model`` or ``--motion``; None without them."""
    if args.motion is not None:
        return _bvh_motion(args.motion)
    if args.model is None:
        return None
    from audiokit.cli.batch import naming_model
    from audiokit.dancing import Dancer
    from audiokit.errors import FileError, ModelError
    from audiokit.hub.pretrained import load_model
    from audiokit.models.dance import STYLES, DanceGenerator

    with naming_model(args.model):
        model = load_model(args.model)
    if not isinstance(model, DanceGenerator):
        raise FileError(args.model, f"is a {type(model).__name__}, not a dance model")
    style = args.style or "auto"
    if style not in ("auto", "any", "known", *STYLES):
        raise ModelError(f"--style {style}: must be auto, any, known or one of {', '.join(STYLES)}")

    dancer = Dancer(model)

    def generate(clip):  # the user's path: audiokit dance's mix-down, DC removal, resampling and beat sync
        chosen = {"any": None, "known": clip.style}.get(style, style) if model.num_styles else None
        return dancer.dance(clip.audio, clip.sample_rate, chosen, name=clip.name, beat_sync=args.beat_sync is not False)

    return generate


def _bvh_motion(folder: Path):
    from audiokit.errors import MotionFileError
    from audiokit.motion.bvh import read_bvh

    def generate(clip):
        path = folder / f"{clip.name}.bvh"
        bvh = read_bvh(path)
        if abs(bvh.fps - clip.fps) > 1e-3:
            raise MotionFileError(path, f"is at {bvh.fps:g} fps, the dances at {clip.fps:g}")
        return bvh.data_positions()

    return generate


def run(args: argparse.Namespace, on_error=None) -> dict:
    """Score the dances of ``args``; the result of ``evaluate_dances`` (a dance that cannot be scored is handed to
    ``on_error`` and left out of every row)."""
    from audiokit.metrics.dance_eval import evaluate_dances
    from audiokit.motion.dance_data import TEST_DANCES

    return evaluate_dances(args.data or DEFAULT_DATA, args.dances or TEST_DANCES, generator(args),
                           window_s=args.window or 10.0, on_error=on_error)


def format_table(result: dict) -> str:
    """The rows of ``evaluate_dances``' result as a plain-text table, then what they mean."""
    width = max(len(row) for row in result["rows"])
    lines = [f"{'':<{width}}" + "".join(f"{title:>10}" for _, title, _ in COLUMNS)]
    for row, figures in result["rows"].items():
        lines.append(f"{row:<{width}}" + "".join(f"{figures[key]:>10.{places}f}" for key, _, places in COLUMNS))
    dances, reference = result["dances"], result["reference"]
    lines += [
        "",
        "dances: " + ", ".join(f"{name} (music {d['music_beats_per_s']:.2f} beats/s, another song {d['another_song']})"
                               for name, d in dances.items()),
        f"FID and div: windows of {reference['window_s']:g} s ({result['windows']['real']} per row) against "
        f"{reference['windows']} of real dancing in {len(reference['dances'])} other dances",
        "beat F: within 70 ms of a music beat; BAS: AIST++'s, sigma 50 ms; speed/bd: mean joint speed per summed "
        "bone length (1/s); slide: cm/s of feet on the floor; drift: root height change, cm; freeze: still share "
        "of the last minute",
    ]
    return "\n".join(lines)
