"""Run serve_speed.py (the server's cost, its own script) at the app's decode threads; its figures into the results JSON.

serve_speed.py is another engineer's. Where it saves its own figures (its --help lists
--results), this only passes the results file on; where it does not yet, this reads the lines it
prints: "server / direct R" and "the server adds M ms". Either way it runs at the app's own
decode threads (hardware.decode_threads: the default a user gets) unless --threads is given.

    .venv/bin/python benchmarks/serve_figures.py --results R.json [serve_speed.py's flags]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import common

SCRIPT = common.ROOT / "benchmarks" / "serve_speed.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser, "serve_speed")
    args, passed = parser.parse_known_args()
    from slmchat.core.models.hardware import decode_threads, detect_machine

    threads = decode_threads(detect_machine().physical_cores)
    if "--threads" not in passed:
        passed = ["--threads", str(threads), *passed]
    else:
        threads = int(passed[passed.index("--threads") + 1])
    command = [sys.executable, str(SCRIPT), *passed]
    saves_itself = "--results" in subprocess.run([*command, "--help"], capture_output=True, text=True,
                                                 check=True, cwd=common.ROOT).stdout
    if saves_itself:
        if args.results:
            command += ["--results", str(args.results), "--key", args.key]
        subprocess.run(command, check=True, cwd=common.ROOT)
        return
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=common.ROOT).stdout
    print(output, end="")
    ratio = re.search(r"server / direct ([0-9.]+)", output)
    added = re.search(r"the server adds (-?[0-9.]+) ms", output)
    if not ratio or not added:
        raise SystemExit("serve_speed.py printed no figures this script can read")
    common.save_results(args.results, args.key, {
        "threads": threads, "ratio": float(ratio.group(1)), "added_first_piece_ms": float(added.group(1)),
        "output": output, "machine": common.machine(), "load_average_after": common.load_average()})


if __name__ == "__main__":
    main()
