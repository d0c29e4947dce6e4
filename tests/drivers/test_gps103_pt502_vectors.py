"""pt502 and gps103 against the shared vectors: detected, decoded, answered as the reference says."""

import pytest

from tests import vectors

CASES = [vector for protocol in ("pt502", "gps103") for vector in vectors.load(protocol)]


@pytest.mark.parametrize("vector", CASES, ids=lambda vector: vector.id)
def test_vector_is_detected_and_agrees_with_reference(vector: vectors.Vector) -> None:
    out = vectors.decode(vector)
    assert vectors.mismatches(vector, out) == []
