"""tools/learning_curve.py: Markdown tables from a run's learning_curve.csv; resumed epochs keep the last row."""
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_tables_split_and_keep_the_last_row_of_an_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(TOOLS))
    from learning_curve import main
    rows = ["epoch,lr,train_loss,valid_loss,valid_si_snr,noisy_si_snr,valid_pesq"]
    rows += [f"{e},0.001,-1,-1,{e / 10:.3f},-0.5," for e in range(1, 6)]
    rows.append("3,0.0005,-1,-1,9.876,-0.5,")  # epoch 3 again, after a resume
    (tmp_path / "learning_curve.csv").write_text("\n".join(rows) + "\n")
    assert main([str(tmp_path), "--first", "2", "--per-row", "3"]) == 0
    tables = capsys.readouterr().out.strip().split("\n\n")
    assert tables[0].splitlines()[0] == "| epoch | 2 | 3 | 4 |"
    assert tables[0].splitlines()[2] == "| SI-SNR | 0.20 | 9.88 | 0.40 |"
    assert tables[0].splitlines()[3] == "| lr | 0.001 | 0.0005 | 0.001 |"
    assert tables[1].splitlines()[0] == "| epoch | 5 |"
    assert main([str(tmp_path / "missing")]) == 1
