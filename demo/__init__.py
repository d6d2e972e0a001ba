"""The end-to-end Atelier demo (`make demo`, or `python -m demo`).

The demo starts a fresh local stack in a temporary home, then tells its story as a sequence of
chapters (see `demo.chapters.CHAPTERS`), each one driving the real `atelier` command line as a user
would and printing what it did. The stack is always stopped at the end, also when a step fails.
"""
