#!/usr/bin/python3
"""Renders every chart of plots/plot_results.py from the seed fixture into a temporary directory and checks the files.

Exit status: 0 passed, 1 failed, 77 skipped (this Python has no matplotlib; CTest SKIP_RETURN_CODE).
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

CHARTS = ["tokens_per_s", "load_time", "vram", "bandwidth_utilization", "quality_vs_speed"]
# A chart with axes, bars and labels is tens of kilobytes; an empty figure is a few.
MIN_BYTES = 15000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", required=True)
    parser.add_argument("--fixture", required=True)
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed for %s: skipped" % sys.executable)
        return 77

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "charts"
        run = subprocess.run([sys.executable, args.script, args.fixture, "--out", str(out)],
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            print(run.stdout, run.stderr, sep="\n")
            print("FAILED: plot_results.py exited with %d" % run.returncode)
            return 1
        for chart in CHARTS:
            png, svg = out / (chart + ".png"), out / (chart + ".svg")
            for path in (png, svg):
                if not path.is_file():
                    failures.append("%s missing" % path.name)
                elif path.stat().st_size < MIN_BYTES:
                    failures.append("%s has only %d bytes" % (path.name, path.stat().st_size))
            if png.is_file() and png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                failures.append("%s is not a PNG" % png.name)
            if svg.is_file() and "<svg" not in svg.read_text()[:2000]:
                failures.append("%s is not an SVG" % svg.name)

        def svg_text(chart):
            path = out / (chart + ".svg")
            return path.read_text() if path.is_file() else ""

        # The fixture has cells out of VRAM and cells bitsandbytes cannot run: both must be marked, not left blank.
        speed = svg_text("tokens_per_s")
        for mark in ("OOM", "n/a", "beam 1", "beam 2", "vicuna-7b-v0 on g5.2xlarge", "gptq 4b", "bnb nf4"):
            if mark not in speed:
                failures.append("tokens_per_s.svg lacks %r" % mark)
        # The budget comes from the fixture's oom records (22.49 GiB on the g5, 15 GiB on the g4dn).
        for mark in ("budget 22.5 GiB", "budget 15.0 GiB"):
            if mark not in svg_text("vram"):
                failures.append("vram.svg lacks %r" % mark)
        if "top-1 agreement" not in svg_text("quality_vs_speed"):
            failures.append("quality_vs_speed.svg lacks its top-1 agreement axis")

        # Anything but a results file is refused with a message, not a traceback.
        bad = subprocess.run([sys.executable, args.script, args.script, "--out", str(out)],
                             capture_output=True, text=True, timeout=60)
        if bad.returncode != 1 or "cannot read as JSON" not in bad.stderr:
            failures.append("a non-JSON input gave exit %d: %s" % (bad.returncode, bad.stderr[-300:]))

    for f in failures:
        print("FAILED:", f)
    print("%d charts checked, %d failures" % (len(CHARTS), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
