"""Write the EDF reader's test fixtures: what an independent reader (pyedflib) sees in real EDF+ files.

For each EDF file below this script writes `tests/fixtures/<stem>.json` holding, per ordinary
signal (the "EDF Annotations" signal is skipped, as our reader skips it): its label, sample
rate, physical minimum and maximum as in the header, number of samples, and its first and
last FIXTURE_SAMPLES physical samples as pyedflib reads them. The Rust tests in
`src/data/edf.rs` read the same files with our reader and compare.

- `tests/fixtures/pyedflib_test_subsecond.edf`: copied from PyPI `pyedflib` (BSD-3-Clause,
  copyright Holger Nahrstaedt, Chris Lee-Messer, Teunis van Beelen; its LICENSE allows
  redistribution with the notice) `pyedflib/tests/data/test_subsecond.edf`: a 1-channel
  (Fp1, 128 Hz, 698 s) EDF+C file with annotations and an inverted physical range
  (physical minimum 8711, maximum -8711), written by software other than ours.
- `web/samples/eeg/eyes_open_shut.edf`: the shipped sample (run scripts/make_eeg_samples.py first).

Run from the repository root:
    python3 -m venv /tmp/eeg-venv && /tmp/eeg-venv/bin/pip install pyedflib
    /tmp/eeg-venv/bin/python scripts/make_edf_fixtures.py
"""

import json
import os
import shutil

import numpy as np
import pyedflib

FIXTURES = os.path.join("tests", "fixtures")
# Samples stored from each end of every signal.
FIXTURE_SAMPLES = 64
PYEDFLIB_TEST_FILE = os.path.join(os.path.dirname(pyedflib.__file__), "tests", "data", "test_subsecond.edf")
ANNOTATIONS_LABEL = "EDF Annotations"


def describe(path):
    """What pyedflib reads in an EDF file, as a JSON-ready dict."""
    reader = pyedflib.EdfReader(path)
    try:
        signals = []
        for i in range(reader.signals_in_file):
            header = reader.getSignalHeader(i)
            if header["label"].strip() == ANNOTATIONS_LABEL:
                continue
            samples = reader.readSignal(i, digital=False).astype(np.float64)
            signals.append(
                {
                    "label": header["label"].strip(),
                    "sample_rate": float(reader.getSampleFrequency(i)),
                    "physical_min": float(header["physical_min"]),
                    "physical_max": float(header["physical_max"]),
                    "n_samples": int(len(samples)),
                    "first": samples[:FIXTURE_SAMPLES].tolist(),
                    "last": samples[-FIXTURE_SAMPLES:].tolist(),
                }
            )
        return {
            "file": os.path.basename(path),
            "reader": f"pyedflib {pyedflib.__version__}",
            "record_duration": float(reader.datarecord_duration),
            "records": int(reader.datarecords_in_file),
            "signals": signals,
        }
    finally:
        reader.close()


def write_fixture(path):
    out = os.path.join(FIXTURES, os.path.splitext(os.path.basename(path))[0] + ".json")
    with open(out, "w") as f:
        json.dump(describe(path), f, indent=1)
    print(f"wrote {out} from {path}")


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    copied = os.path.join(FIXTURES, "pyedflib_test_subsecond.edf")
    shutil.copyfile(PYEDFLIB_TEST_FILE, copied)
    print(f"copied {PYEDFLIB_TEST_FILE} to {copied}")
    write_fixture(copied)
    write_fixture(os.path.join("web", "samples", "eeg", "eyes_open_shut.edf"))


if __name__ == "__main__":
    main()
