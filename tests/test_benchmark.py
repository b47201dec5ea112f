"""tools/benchmark.py runs and reports sane numbers (no timing assertions)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "benchmark.py"


def test_table_formatting():
    sys.path.insert(0, str(TOOL.parent))
    from benchmark import format_table
    rows = [dict(model="causal_small", mode="stream", threads=1, rtf=0.05, cpu_rtf=0.04, chunk_p50_ms=0.1,
                 chunk_p99_ms=1.5, latency_ms=32.0, peak_rss_mb=400.0),
            dict(model="official", mode="offline", threads=2, rtf=0.5, peak_rss_mb=900.0)]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and "32.00" in lines[2] and lines[3].split()[:4] == ["official", "offline", "2", "0.500"]
    assert lines[2].split()[3:5] == ["0.050", "0.040"] and lines[3].split()[4] == "-"


@pytest.mark.slow
def test_quick_run_reports_sane_numbers():
    proc = subprocess.run([sys.executable, str(TOOL), "--quick", "--json", "--models", "causal_small"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert {(r["mode"], r["threads"]) for r in rows} == {("offline", 1), ("stream", 1)}
    for r in rows:
        assert 0 < r["rtf"] < 50 and 0 < r["cpu_rtf"] < 50 and 50 < r["peak_rss_mb"] < 8000
    stream = next(r for r in rows if r["mode"] == "stream")
    assert stream["latency_ms"] == 32.0 and stream["chunk_ms"] == 10.0
    assert 0 <= stream["chunk_p50_ms"] <= stream["chunk_p99_ms"]
