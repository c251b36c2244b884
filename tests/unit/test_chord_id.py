"""A chord's id is its body's, read and written (``chord.id = ...`` names the body's call)."""

from __future__ import annotations

import pytest

from entrypoints.celery_compat import Signature, chord


def test_setting_a_chords_id_names_its_body() -> None:
    made = chord([Signature("t.add", (1, 1))], Signature("t.tsum"))
    made.id = "chord-1"
    assert made.id == "chord-1"
    assert made.body.id == "chord-1"


def test_a_chord_without_a_body_has_no_id_to_set() -> None:
    made = chord([Signature("t.add", (1, 1))])
    assert made.id is None
    with pytest.raises(TypeError, match="needs a body"):
        made.id = "chord-1"
