#!/usr/bin/env python3
"""MPCALLOC_STATS_SIGNAL: nine signals give nine reports (json: MPCALLOC_STATS's file, then the
exit one; text: stderr); taken: an inherited SIG_IGN stays, with one warning.
Usage: check_stats_signal.py PROBE json|text|taken"""
import json
import os
import signal
import subprocess
import sys
import tempfile

probe, case = sys.argv[1], sys.argv[2]
# Cross builds: the probe runs under the emulator (e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu").
probe_cmd = os.environ.get("TEST_EMULATOR", "").split() + [probe]
SIGNALS = 9


def fail(msg):
    sys.exit(f"FAIL ({case}): {msg}")


def run(args, env, **kw):
    r = subprocess.run(probe_cmd + args, env={**os.environ, **env}, capture_output=True, text=True,
                       timeout=120, **kw)
    if r.returncode != 0:
        fail(f"probe exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


with tempfile.TemporaryDirectory() as tmp:
    if case == "json":
        pattern = os.path.join(tmp, "stats.%p.json")
        r = run(["run", pattern, '"signal": '],
                {"MPCALLOC_STATS_SIGNAL": "USR2", "MPCALLOC_STATS": f"json:{pattern}"})
        files = os.listdir(tmp)
        if len(files) != 1:
            fail(f"want one stats file, got {files}")
        lines = open(os.path.join(tmp, files[0])).read().splitlines()
        if len(lines) != SIGNALS + 1:
            fail(f"{len(lines)} lines, want {SIGNALS} signal reports + the exit one:\n" + "\n".join(lines))
        objs = [json.loads(l)["mpcalloc"] for l in lines]  # each line one JSON object
        for i, o in enumerate(objs[:SIGNALS]):
            if o.get("signal") != signal.SIGUSR2 or not isinstance(o.get("complete"), bool):
                fail(f"report {i} lacks signal/complete: {o}")
        if "signal" in objs[-1] or "complete" in objs[-1]:
            fail(f"the last object is not the exit report: {objs[-1]}")
        for o in objs:
            if not (o["huge_bytes"] <= o["mapped_bytes"] and o["cached_bytes"] <= o["mapped_bytes"]
                    and o["peak_mapped_bytes"] >= o["mapped_bytes"]):
                fail(f"inconsistent figures: {o}")
            for p in o["places"]:
                if p["mapped_bytes"] < p["cached_bytes"] or p["mapped_bytes"] < p["huge_bytes"]:
                    fail(f"inconsistent place: {p}")
        if objs[-1]["peak_mapped_bytes"] < 2 << 20:
            fail(f"the exit report does not show the probe's huge blocks: {objs[-1]}")
        incomplete = sum(not o["complete"] for o in objs[:SIGNALS])
        print(f"ok: {SIGNALS} signal reports + exit report, {incomplete} incomplete (a place was busy)")
    elif case == "text":
        err = os.path.join(tmp, "stderr")
        with open(err, "w") as f:
            r = subprocess.run(probe_cmd + ["run", err, "mpcalloc: stats on signal"],
                               env={**os.environ, "MPCALLOC_STATS_SIGNAL": "SIGUSR2"},
                               stdout=subprocess.PIPE, stderr=f, text=True, timeout=120)
        text = open(err).read()
        if r.returncode != 0:
            fail(f"probe exited {r.returncode}: {r.stdout}{text}")
        blocks = text.split(f"mpcalloc: stats on signal {int(signal.SIGUSR2)}\n")
        if len(blocks) != SIGNALS + 1 or blocks[0] != "":
            fail(f"want {SIGNALS} text reports and nothing else:\n{text}")
        for b in blocks[1:]:
            if "mpcalloc:   mapped_bytes = " not in b or "mpcalloc:   remote_frees = " not in b:
                fail(f"a report lacks its fields:\n{b}")
        print(f"ok: {SIGNALS} text reports on stderr")
    elif case == "taken":
        r = run(["taken"], {"MPCALLOC_STATS_SIGNAL": "USR2"},
                preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
        want = "mpcalloc: MPCALLOC_STATS_SIGNAL: SIGUSR2 already has a handler (or is ignored); no statistics on it\n"
        if r.stderr != want or r.stdout != "still ignored\n":
            fail(f"stdout {r.stdout!r}, stderr {r.stderr!r}")
        print("ok: the ignored signal stays ignored, one warning")
    else:
        fail("unknown case")
