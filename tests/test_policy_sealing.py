"""Content at rest sealed with the master key: it opens only with that key and only in its row,
and what was kept before a key was set stays readable."""

from __future__ import annotations

import pytest

from podium.policy.sealing import PREFIX, MasterKeySealer, SealError, Unsealed, sealer_for

KEY = "k" * 43


def test_a_sealed_value_opens_with_its_key_in_its_row_only() -> None:
    sealer = MasterKeySealer(KEY, "stored-content")
    sealed = sealer.seal(b'{"text": "our plans"}', "resp_1")
    assert sealed.startswith(PREFIX) and "plans" not in sealed
    assert sealer.open(sealed, "resp_1") == b'{"text": "our plans"}'
    assert sealer.seal(b"same", "r") != sealer.seal(b"same", "r")  # a fresh nonce each time
    with pytest.raises(SealError, match="moved"):
        sealer.open(sealed, "resp_2")
    with pytest.raises(SealError):
        MasterKeySealer("another key entirely", "stored-content").open(sealed, "resp_1")
    with pytest.raises(SealError):
        MasterKeySealer(KEY, "another-purpose").open(sealed, "resp_1")
    with pytest.raises(SealError):
        sealer.open(sealed[:-4] + "AAAA", "resp_1")


def test_values_kept_before_a_key_stay_readable_and_a_keyless_gateway_says_why() -> None:
    assert MasterKeySealer(KEY, "p").open('{"a": 1}', "r") == b'{"a": 1}'
    sealed = MasterKeySealer(KEY, "p").seal(b"x", "r")
    with pytest.raises(SealError, match="no master key") as refused:
        Unsealed().open(sealed, "r")
    assert refused.value.status == 500 and KEY not in refused.value.message
    assert isinstance(sealer_for(None, "p"), Unsealed)
    assert isinstance(sealer_for("", "p"), Unsealed)
    assert Unsealed().seal(b"plain", "r") == "plain"
