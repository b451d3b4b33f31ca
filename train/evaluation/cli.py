"""``python -m train evaluate``: a weights folder on an NIH split (:mod:`.evaluate`), or with ``--scores`` a
``cxr score`` file against another dataset's labels (:mod:`.external`, which reuses evaluate's metrics).

The choice is made here, above both, so that neither of the two modules imports the other.
"""

from __future__ import annotations

from train.evaluation import evaluate, external


def main(argv: list[str]) -> int:
    """Run external validation when ``--scores`` is given, else the NIH evaluation."""
    if any(arg == "--scores" or arg.startswith("--scores=") for arg in argv):
        return external.main(argv)
    return evaluate.main(argv)
