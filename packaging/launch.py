"""Frozen-app entry point: multiprocessing's spawn needs freeze_support() before anything else."""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from slmchat.app import main

    raise SystemExit(main())
