"""``audiokit train RECIPE.yaml [--key value ...]``: the subcommand of :mod:`audiokit.tasks.train`."""
from audiokit.tasks.train import add_parser, run

__all__ = ["add_parser", "run"]
