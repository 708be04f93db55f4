#!/usr/bin/env python3
"""Independent reference for the window_agg golden files (Python 3, standard library only).

    python3 tests/data/window_agg/reference.py          # checks every golden file
    python3 tests/data/window_agg/reference.py --write  # rewrites them

It implements Flink's event-time window semantics directly, without Brisk: tumbling and sliding
windows (start = ts - ts mod slide), bounded out-of-orderness watermarks (max timestamp seen -
bound - 1 ms), a window firing once when the watermark passes its last millisecond, allowed
lateness (a late event whose window is still kept fires it again with everything so far), and
events too late for every window going to the late side output.

Watermarks are periodic in processing time, so exactly when one is emitted is not fixed. The
script therefore computes, for each event, the lowest and the highest watermark the window
operator can have seen before it: the highest reflects every earlier event; the lowest only the
events at least GUARANTEED_GAP positions earlier (the test throttles the source to 4000 events/s,
so those were read at least 0.75 s before, and a watermark is emitted every 200 ms). It refuses
input whose outcome would differ between the two, so the golden files hold for every timing.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SECOND = 1000
GUARANTEED_GAP = 3000  # events between a late event and the watermark it is sure to follow


def read_events(name):
    with open(os.path.join(HERE, name)) as f:
        return [(k, int(t), int(v)) for k, t, v in (line.strip().split(",") for line in f if line.strip())]


def windows_of(ts, size, slide):
    last_start = ts - ts % slide
    return [(s, s + size) for s in range(last_start, ts - size, -slide)]


def aggregate(events, size, slide, bound, lateness):
    """Returns (result lines, late event lines) as a Flink job would write them."""
    contents = {}  # (key, window) -> (sum, count)
    fired = set()
    results, late = [], []
    max_before = []  # max timestamp of events[0..i)
    highest = None
    for _, ts, _ in events:
        max_before.append(highest)
        highest = ts if highest is None else max(highest, ts)

    def watermark(i):
        m = max_before[i] if i >= 0 else None
        return -(2**63) if m is None else m - bound - 1

    for i, (key, ts, value) in enumerate(events):
        w_high = watermark(i)
        w_low = watermark(i - GUARANTEED_GAP) if i >= GUARANTEED_GAP else -(2**63)
        # Windows that ended fire when the watermark passes them: fire every window whose end
        # the guaranteed watermark passed (the rest fire later with the same contents).
        for (k, win), acc in sorted(contents.items()):
            if (k, win) not in fired and win[1] - 1 <= w_low:
                fired.add((k, win))
                results.append((k, win, acc))
        kept = []
        for win in windows_of(ts, size, slide):
            end = win[1] - 1
            if end > w_high:
                kept.append((win, False))
            elif end + lateness <= w_low:
                continue  # dropped: too late for this window
            elif end <= w_low and end + lateness > w_high:
                kept.append((win, True))
            else:
                raise SystemExit(f"event {i} ({key},{ts}): lateness depends on the watermark's timing")
        if not kept:
            late.append(f"{key},{ts},{value}")
            continue
        for win, is_late in kept:
            s, c = contents.get((key, win), (0, 0))
            contents[(key, win)] = (s + value, c + 1)
            if is_late:
                # Flink's event-time trigger fires a late (but allowed) element's window at once.
                fired.add((key, win))
                results.append((key, win, contents[(key, win)]))
    for (k, win), acc in sorted(contents.items()):
        if (k, win) not in fired:
            results.append((k, win, acc))
    lines = [f"{k},{w[0]},{w[1]},{s},{c}" for k, w, (s, c) in results]
    return sorted(lines), sorted(late)


def late_events():
    """12,000 events, 10 ms apart with disorder below 2 s, and a few events far too late. The
    test makes the same input (`late_events` in tests/window_agg.rs) instead of a stored file."""
    base = 1_700_000_000_000
    events = []
    for i in range(12_000):
        ts = base + i * 10 - (i * 7919) % 1500
        events.append((f"k{i % 5}", ts, (i * 31) % 1000))
    # Inserted late events: (position, key, seconds after base, value). Windows are 10 s and the
    # allowed lateness of the second case 60 s: the first two are dropped in both cases, the
    # last three are late but within 60 s (one of them the only event of its key and window).
    late = [
        (11_000, "k1", 5.0, 7),
        (11_500, "k2", 15.5, 11),
        (11_001, "k3", 65.0, 13),
        (11_800, "k4", 75.2, 17),
        (11_801, "late-only", 60.0, 19),
    ]
    for pos, key, seconds, value in sorted(late, reverse=True):
        events.insert(pos, (key, base + int(seconds * SECOND), value))
    return events


def main():
    write = "--write" in sys.argv
    cases = [
        ("events.csv", 10, 10, 0, "expected_tumbling_10s.csv", None),
        ("events.csv", 10, 5, 0, "expected_sliding_10s_5s.csv", None),
        ("late_events.csv", 10, 10, 0, "expected_late_tumbling_10s.csv", "expected_late_tumbling_10s_late.csv"),
        (
            "late_events.csv",
            10,
            10,
            60,
            "expected_late_tumbling_10s_lateness_60s.csv",
            "expected_late_tumbling_10s_lateness_60s_late.csv",
        ),
    ]
    failed = False
    for source, size, slide, lateness, golden, golden_late in cases:
        events = late_events() if source == "late_events.csv" else read_events(source)
        results, late = aggregate(events, size * SECOND, slide * SECOND, 2 * SECOND, lateness * SECOND)
        if source == "events.csv" and late:
            raise SystemExit("events.csv must have no late events")
        for name, lines in [(golden, results), (golden_late, late)]:
            if name is None:
                continue
            path = os.path.join(HERE, name)
            text = "".join(line + "\n" for line in lines)
            if write:
                with open(path, "w") as f:
                    f.write(text)
            elif open(path).read() != text:
                print(f"{name} differs from the reference")
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
