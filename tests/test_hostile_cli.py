"""Every file of the hostile corpus through the command line: a JSON line or one clear stderr line each."""

from __future__ import annotations

import json

from cxr.cli import main
from tests.bad_inputs import PATIENT_IDENTIFIERS, build_corpus


def test_cli_answers_every_corpus_file_and_keeps_going(tiny_weights, tmp_path, capsys) -> None:
    corpus = build_corpus()
    inputs = tmp_path / "in"
    paths = []
    for i, case in enumerate(corpus):
        # Hostile names ("../../etc/passwd.png") are kept as a last path component only.
        path = inputs / f"{i:02d}" / case.name.replace("/", "_")
        path.parent.mkdir(parents=True)
        path.write_bytes(case.data)
        paths.append(str(path))
    cams = tmp_path / "cams"
    status = main(["predict", *paths, "--weights", str(tiny_weights), "--cam-dir", str(cams), "--cam-labels", "Mass"])
    captured = capsys.readouterr()
    assert status == 1
    answered = {json.loads(line)["image"] for line in captured.out.splitlines()}
    refused = {line.split(": ", 1)[0] for line in captured.err.splitlines() if line.startswith(str(inputs))}
    expected_ok = {p for p, c in zip(paths, corpus, strict=True) if c.expect == "ok"}
    assert answered == expected_ok
    assert refused == set(paths) - expected_ok
    assert len(list(cams.iterdir())) == len(expected_ok)
    for value in PATIENT_IDENTIFIERS.values():
        assert value not in captured.out and value not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cams", "in"]  # nothing else written
