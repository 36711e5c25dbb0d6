"""`python -m batchbanana` runs the command line."""

from batchbanana.cli import entry

if __name__ == "__main__":
    entry()
