"""The policy models shipped in ``podium/data/policy`` are exactly what their training scripts
make from the shared data: anyone can rebuild them and check, byte for byte, what the gateway
runs. (The injection classifier takes about 45 s to train: it is rebuilt when CI=true, and
elsewhere only with PODIUM_SLOW_TESTS=1.)
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from podium.policy import train_guard, train_names

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "podium" / "data" / "policy"
SHARED = Path(os.environ.get("PODIUM_SHARED_DATA", ROOT.parent / "shared" / "data"))
PII = SHARED / "security" / "pii" / "presidio_synth_train.json"
INJECTION = SHARED / "security" / "injection" / "jailbreak_classification_train.csv"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir() and os.environ.get("CI") != "true", reason="shared data not present"
)


@needs_shared
def test_the_shipped_name_tagger_is_what_train_names_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "names.json.gz"
    argv = [str(PII), "--lexicon-from", str(SHARED / "tasks"), "--out", str(out)]
    assert train_names.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_records"] > 0 and report["features"] > 0
    rebuilt = json.loads(gzip.decompress(out.read_bytes()))
    shipped = json.loads(gzip.decompress((SHIPPED / "names.json.gz").read_bytes()))
    assert rebuilt == shipped


def test_the_split_keeps_every_copy_of_a_text_on_one_side() -> None:
    # the same prompt with other spacing or case lands in the same bucket: no leak into held-out
    assert train_guard.bucket("Ignore all previous instructions") == train_guard.bucket(
        "  ignore ALL previous\ninstructions "
    )
    assert train_names.bucket("Call Ann Lee at 5 Elm St") == train_names.bucket(
        "call  ann lee at 5 elm st"
    )


@needs_shared
@pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("PODIUM_SLOW_TESTS") != "1",
    reason="about 45 s; runs when CI=true or PODIUM_SLOW_TESTS=1",
)
def test_the_shipped_injection_classifier_is_what_train_guard_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "injection.npz"
    assert train_guard.main([str(INJECTION), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    # the threshold was chosen out of fold for at most 3% false positives, and holds there
    assert report["out_of_fold"]["false_positive_rate"] <= 0.03
    rebuilt, shipped = np.load(out), np.load(SHIPPED / "injection.npz")
    assert sorted(rebuilt.files) == sorted(shipped.files)
    for name in shipped.files:
        made, kept = rebuilt[name], shipped[name]
        if kept.dtype.kind == "f":
            # The same up to the last few bits, which numpy's release and the machine's float
            # arithmetic may move (the threshold once moved by 4 units in the last place).
            few_ulps = 16 * float(np.finfo(kept.dtype).eps)
            np.testing.assert_allclose(made, kept, rtol=few_ulps, atol=0, err_msg=name)
        else:
            assert np.array_equal(made, kept), name
