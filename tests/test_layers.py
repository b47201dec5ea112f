"""The house rule: each layer of ``audiokit`` imports only from the layers below it."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiokit"
# Lower rank = lower layer. Peers (same rank) may not import each other either.
# motion is a low layer beside nn: it shares the audio layer's file writing.
RANK = {"errors": 0, "shipped": 0, "audio": 1, "motion": 2, "nn": 2, "models": 3, "streaming": 4, "tasks": 5,
        "metrics": 5, "hub": 6, "blocks": 7, "dancing": 7, "api": 8, "cli": 9, "__init__": 10}


def layer_of(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def audiokit_imports(path: Path, root: Path = PACKAGE):
    """(line, layer) for every ``audiokit`` layer that ``path`` imports, relative imports resolved."""
    package = ["audiokit", *path.relative_to(root).parts[:-1]]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            names = [".".join(base + ([node.module] if node.module else []))]
            if node.level and not node.module:  # "from .. import x": x may be a layer itself
                names = [".".join(base + [alias.name]) for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "audiokit" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_layer_imports_only_from_below():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    wrong = []
    for path in files:
        layer = layer_of(path)
        assert layer in RANK, f"{path}: new layer {layer!r}; give it a rank in this test"
        for line, target in audiokit_imports(path):
            assert target in RANK, f"{path}:{line}: imports unknown layer {target!r}"
            if target != layer and RANK[target] >= RANK[layer]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_relative_and_absolute_imports_are_resolved(tmp_path):
    root = tmp_path / "audiokit"
    (root / "nn").mkdir(parents=True)
    bad = root / "nn" / "bad.py"
    bad.write_text("from ..hub import pretrained\nfrom .. import models\nimport audiokit.errors\nfrom . import fsmn\n")
    assert layer_of(bad, root) == "nn"
    assert list(audiokit_imports(bad, root)) == [(1, "hub"), (2, "models"), (3, "errors"), (4, "nn")]
