"""tools/benchmark.py runs and reports sane numbers (no timing assertions)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "benchmark.py"


def test_table_formatting():
    sys.path.insert(0, str(TOOL.parent))
    from benchmark import format_table
    rows = [dict(model="causal_small", mode="stream", engine="onnx", threads=1, rtf=0.05, cpu_rtf=0.04,
                 chunk_p50_ms=0.1,
                 chunk_p99_ms=1.5, chunk_max_ms=2.5, latency_ms=32.0, peak_rss_mb=400.0),
            dict(model="official", mode="offline", threads=2, rtf=0.5, peak_rss_mb=900.0)]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and "32.00" in lines[2]
    assert lines[3].split()[:5] == ["official", "offline", "-", "2", "0.500"]
    assert lines[2].split()[2:] == ["onnx", "1", "0.050", "0.040", "0.10", "1.50", "2.50", "32.00", "400"]
    assert lines[3].split()[5:] == ["-"] * 5 + ["900"]


def test_file_speedup_lines():
    sys.path.insert(0, str(TOOL.parent))
    from benchmark import file_speedups, format_speedups
    rows = [dict(model="causal_small", mode="file", engine="chunks", threads=1, rtf=0.05, cpu_rtf=0.04),
            dict(model="causal_small", mode="file", engine="onnx", threads=1, rtf=0.1, cpu_rtf=0.1),
            dict(model="causal_small", mode="stream", engine="onnx", threads=1, rtf=0.2, cpu_rtf=0.2)]
    speedups = file_speedups(rows)
    assert [(s["engine"], round(s["speedup"], 2), round(s["cpu_speedup"], 2)) for s in speedups] == [
        ("onnx", 2.0, 2.5)]
    assert format_speedups(speedups) == ("causal_small, 1 thread(s): a file on chunks is 2.00x as fast as frame by "
                                         "frame on onnx (CPU time 2.50x)")


def test_reference_line_formatting():
    sys.path.insert(0, str(TOOL.parent))
    from benchmark import format_reference
    ref = dict(network="MossFormer2_SS_16K", weights="seeded random weights", seconds=4.0, ours_rtf=3.0,
               reference_rtf=9.0, speedup=3.0, ours_cpu_rtf=2.9, reference_cpu_rtf=8.8, cpu_speedup=3.03,
               max_abs_diff=1.5e-7, max_abs_reference=0.12)
    line = format_reference(ref)
    assert "MossFormer2_SS_16K" in line and "4 s" in line and "3.00x faster" in line and "interior" not in line
    assert "max |diff| 1.50e-07" in line and "(CPU time 3.03x)" in line
    assert "interior 2.00e-06" in format_reference(dict(ref, max_abs_diff_interior=2e-6))
    assert format_reference(dict(network="FRCRN_SE_16K", skipped="no module")).endswith("skipped (no module)")


@pytest.mark.slow
def test_quick_run_of_the_separator_streams_in_one_second_windows():
    proc = subprocess.run([sys.executable, str(TOOL), "--quick", "--json", "--models", "separator_small"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {r["mode"]: r for r in json.loads(proc.stdout)["rows"]}
    assert set(rows) == {"offline", "stream"} and all(0 < r["rtf"] < 50 for r in rows.values())
    assert rows["stream"]["latency_ms"] == 1000.0 and rows["stream"]["chunk_ms"] == 10.0


@pytest.mark.slow
def test_quick_run_reports_sane_numbers():
    proc = subprocess.run([sys.executable, str(TOOL), "--quick", "--json", "--models", "causal_small"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    rows = report["rows"]
    frame_engine = next(r["engine"] for r in rows if r["mode"] == "stream")  # onnx, or torch without it
    assert sorted((r["mode"], r.get("engine"), r["threads"]) for r in rows) == sorted([
        ("file", "chunks", 1), ("file", frame_engine, 1), ("offline", None, 1), ("stream", frame_engine, 1)])
    assert [(s["model"], s["engine"]) for s in report["file_speedup"]] == [("causal_small", frame_engine)]
    assert report["file_speedup"][0]["speedup"] > 0
    for r in rows:
        assert 0 < r["rtf"] < 50 and 0 < r["cpu_rtf"] < 50 and 50 < r["peak_rss_mb"] < 8000
    stream = next(r for r in rows if r["mode"] == "stream")
    assert stream["latency_ms"] == 32.0 and stream["chunk_ms"] == 10.0
    assert 0 <= stream["chunk_p50_ms"] <= stream["chunk_p99_ms"]


def test_training_benchmark_reports_step_time(capsys):
    sys.path.insert(0, str(TOOL.parent))
    from benchmark_training import main
    assert main(["--steps", "1", "--seconds", "0.25", "--batch", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mossformer2_ss_8k_small.yaml: 0.79 M parameters, batch 1 x 0.25 s at 8000 Hz")
    assert lines[1].startswith("step ") and "s of audio trained per CPU second" in lines[1]


def test_training_benchmark_names_a_missing_recipe(tmp_path, capsys):
    sys.path.insert(0, str(TOOL.parent))
    from benchmark_training import main
    missing = tmp_path / "nope.yaml"
    assert main([str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(missing) in err and "\n" not in err


def test_lssl_section_formatting():
    sys.path.insert(0, str(TOOL.parent))
    from benchmark import format_lssl
    report = {"kernel": [dict(length=1000, ms=33.3, cpu_ms=33.0, peak_mb=25.0, kernel_mb=1.0),
                         dict(length=64000, ms=172.2, cpu_ms=141.4, peak_mb=187.7, kernel_mb=62.5)],
              "step": dict(layer_chunk_1=7.2, layer_chunk_16=0.52, layer_chunk_160=0.344, classifier_chunk_160=1.2)}
    lines = format_lssl(report).splitlines()
    assert lines[2].split() == ["1000", "33.3", "33.0", "25.0", "1.0"] and lines[3].split()[0] == "64000"
    assert "1: 7.200, 16: 0.520, 160: 0.344" in lines[4] and lines[4].endswith("1.200")


@pytest.mark.slow
def test_lssl_section_is_picked_by_models_and_reports_every_length():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(TOOL), "--quick", "--json", "--models", "lssl"],
                          capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"] == [] and [r["length"] for r in report["lssl"]["kernel"]] == [1000, 4000, 16000, 64000]
    assert all(r["ms"] > 0 and r["peak_mb"] > 0 for r in report["lssl"]["kernel"])
    assert all(0 < v < 100 for v in report["lssl"]["step"].values())


def test_dance_section_formatting():
    sys.path.insert(0, str(TOOL.parent))
    from benchmark import format_dance
    r = dict(weights="random weights, the architecture of recipes/dance/dance_lstm.yaml", params_m=1.47, seconds=30.0,
             offline_rtf=0.018, offline_cpu_rtf=0.0179, beat_sync_rtf=0.0021,
             stream_rtf=0.0655, stream_cpu_rtf=0.0512, chunk_ms=10.0,
             chunk_p50_ms=0.02, chunk_max_ms=9.11, latency_ms=126.0, frame_ms=40.0, window_ms=86.0)
    first, second = format_dance(r).splitlines()
    assert first.startswith("dance generator (random weights, the architecture of recipes/dance/dance_lstm.yaml, "
                            "1.47 M parameters), 1 thread, 30 s of music")
    assert "offline (model.dance) RTF 0.0180 (CPU 0.0179), then beat sync (audiokit dance) RTF 0.0021" \
        in second
    assert "10 ms blocks) RTF 0.0655 (CPU 0.0512)" in second
    assert second.endswith("latency 126.0 ms = motion frame 40 ms + spectrum window 86 ms")


@pytest.mark.slow
def test_dance_section_measures_offline_and_streaming_generation():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(TOOL), "--quick", "--json", "--models", "dance"],
                          capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    dance = report["dance"]
    assert report["rows"] == [] and dance["seconds"] == 2.0 and dance["chunk_ms"] == 10.0
    assert dance["latency_ms"] == 126.0 and dance["frame_ms"] == 40.0 and dance["window_ms"] == 86.0
    assert all(0 < dance[k] < 50 for k in ("offline_rtf", "offline_cpu_rtf", "beat_sync_rtf", "stream_rtf",
                                           "stream_cpu_rtf"))
